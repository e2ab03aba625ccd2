"""PaliGemma transfer configs, one per benchmark, and forkme.py (the template to copy).

Each is run as `--config transfers/NAME.py:args`; they share `transfers/common.py`, imported
as a package (see big_vision_lite.config_args.configs_importable).
"""
