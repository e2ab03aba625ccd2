"""Evaluators: one `Evaluator` per module, built by `common.from_config`.

Modules: perplexity, vqav2, vqa, chartqa, science_qa, tallyqa, pope, rsvqa, choice
(NLVR2 / AI2D), coco_caption, segmentation, detection, storepreds. Pure metric helpers
live in ptb_tokenizer and caption_metrics (captioning) and coco_map (detection).
"""
