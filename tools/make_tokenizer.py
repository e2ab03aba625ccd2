"""Makes a PaliGemma-style SentencePiece model (base vocabulary + loc/seg pieces).

Extend an existing model (e.g. Gemma's tokenizer.model -> 257152 pieces):
  python -m tools.make_tokenizer extend --input tokenizer.model --output pg.model
Train a small model on a text corpus (one sentence per line) and append the pieces:
  python -m tools.make_tokenizer train --corpus corpus.txt --output tiny.model --vocab_size 1000
"""
import os

from big_vision_lite import cli
from big_vision_lite import tokenizer


EXAMPLES = (
    "python -m tools.make_tokenizer extend --input tokenizer.model --output pg.model",
    "python -m tools.make_tokenizer train --corpus corpus.txt --output tiny.model \\\n"
    "      --vocab_size 1000",
    "python -m tools.make_tokenizer train --corpus workdirs/shapes/corpus.txt \\\n"
    "      --output /tmp/shapes.model --vocab_size 300 --model_type unigram",
)


def main(argv=None):
  parser = cli.parser(__doc__, EXAMPLES, prog="python -m tools.make_tokenizer")
  sub = parser.add_subparsers(dest="command", required=True)
  ext = sub.add_parser("extend", help="append <loc>/<seg> pieces to a SentencePiece model")
  ext.add_argument("--input", required=True, help="path of the base .model")
  ext.add_argument("--output", required=True, help="path of the extended .model")
  tr = sub.add_parser("train", help="train a small model and append the pieces")
  tr.add_argument("--corpus", required=True, help="text file, one sentence per line")
  tr.add_argument("--output", required=True, help="path of the .model to write")
  tr.add_argument("--vocab_size", type=int, default=1000, help="base vocabulary size")
  tr.add_argument("--model_type", default="bpe", choices=("bpe", "unigram"))
  args = parser.parse_args(argv)
  src = args.input if args.command == "extend" else args.corpus
  if not os.path.isfile(src):
    flag = "--input" if args.command == "extend" else "--corpus"
    raise FileNotFoundError(f"{flag} {src!r} does not exist; pass an existing "
                            f"{'SentencePiece .model' if flag == '--input' else 'text'} "
                            "file.")

  if args.command == "extend":
    tokenizer.extend_with_loc_seg(args.input, args.output)
  else:
    try:
      with open(args.corpus, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    except UnicodeDecodeError as e:
      byte = e.object[e.start:e.start + 1]
      raise ValueError(f"--corpus {args.corpus!r} is not UTF-8 text (byte {byte!r} at "
                       f"offset {e.start}); valid: a UTF-8 file, one sentence per "
                       "line.") from None
    tokenizer.train_tokenizer(lines, args.output, args.vocab_size,
                              model_type=args.model_type)
  tok = tokenizer.Tokenizer(args.output)
  print(f"Wrote {args.output}: vocab_size={tok.vocab_size} <loc0000>={tok.loc_base} "
        f"<seg000>={tok.seg_base}")


if __name__ == "__main__":
  cli.run(main)
