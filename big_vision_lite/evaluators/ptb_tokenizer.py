"""PTB-style caption tokenisation as the COCO caption toolkit does it, in pure Python.

pycocoevalcap runs Stanford CoreNLP 3.4.1's PTBTokenizer (Java) with `-preserveLines
-lowerCase`, then drops the tokens '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;
This module reproduces that on caption text without Java:

- punctuation is split off and dropped (. , ; : ? ! - -- ... quotes), except inside
  numbers (1,000  3.5  10:30  3-4), abbreviations (u.s.  e.g.  mr.  a.) and words
  (black-and-white, o'clock, cat/dog);
- clitics are split: "don't" -> "do n't", "can't" -> "ca n't", "dog's" -> "dog 's",
  "they're" -> "they 're"; "cannot" -> "can not", "gonna" -> "gon na";
- brackets become -lrb- -rrb- -lsb- -rsb- -lcb- -rcb- and, as in the toolkit (which
  lower-cases before comparing with its upper-case drop list), they are KEPT;
- "$5" -> "$ 5", "50%" -> "50 %", "a+b" -> "a + b"; repeated "!!" / "??" are kept;
- curly quotes, en/em dashes and the ellipsis character are treated as their ASCII forms.

Known differences from the Java tokenizer (rare in captions): URLs / e-mail addresses
with unusual characters, emoticons (":)" -> ":-rrb-"), "y'all" / "more'n" style
clitics, vulgar fractions ("½" -> "1/2"), and sentence-final single letters followed by
an ellipsis. The caption tests compare this tokenizer with the Java one.
"""
import re

DROP = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?",
                  "!", ",", ":", "-", "--", "...", ";"])
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-",
             "}": "-rcb-"}
_UNICODE = {"\u201c": "\"", "\u201d": "\"", "\u2018": "'", "\u2019": "'", "\u2014": " -- ",
            "\u2013": " -- ", "\u2026": "...", "\t": " ", "\n": " ", "\r": " "}
_ABBREVIATIONS = ("mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "inc", "co",
                  "ltd", "prof", "mt", "ft", "ave", "no", "gen", "col", "capt", "lt",
                  "sgt", "rev", "gov", "sen", "rep", "corp", "bros", "messrs")
_SPECIAL = {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"),
            "wanna": ("wan", "na"), "lemme": ("lem", "me"), "gimme": ("gim", "me"),
            "'tis": ("'t", "is"), "'twas": ("'t", "was")}
_CLITIC = re.compile(r"^(.+?)(n't|'s|'m|'d|'re|'ve|'ll)$", re.IGNORECASE)

_LETTER = r"[^\W\d_]"
_TOKEN = re.compile(rf"""
    https?://\S+                                   # URL
  | [\w.+-]+@\w+(?:[.-]\w+)+                        # e-mail
  | {_LETTER}+(?:\.{_LETTER}+)+\.?                  # u.s.  e.g.  u.s.a  ph.d.
  | (?:{'|'.join(_ABBREVIATIONS)})\.(?!\w)          # mr.  st.  etc.
  | (?<![\w.]){_LETTER}\.(?![\w.])                  # single initial: a.  c.
  | '\d+s?\b | 'em\b | 'tis\b | 'twas\b             # '90s  'em  'tis
  | '(?:s|m|d|re|ve|ll)\b | n't\b                   # detached clitics
  | [@\#][^\W\d]\w* | </?\w+>                              # @user  #tag  <tag>
  | (?<![\w.])[-+]\d+(?:[.,:/]\d+)*                 # -5  +5
  | \w+(?:(?:-|/|\.(?=\w)|(?<=\d)[,:](?=\d)|(?<={_LETTER})'(?={_LETTER}))\w+)*
                                                    # words, numbers, hyphenated
  | \.{{2,}}                                        # ellipsis
  | -{{2,}}                                         # dashes
  | ''|``                                           # quotes
  | !+|\?+                                          # !! ??
  | [^\w\s]                                         # any other single symbol
""", re.VERBOSE | re.IGNORECASE)


def _split_word(token):
  """Splits clitics and the special contractions off one word token."""
  low = token.lower()
  if low in _SPECIAL:
    return list(_SPECIAL[low])
  m = _CLITIC.match(token)
  if m and m.group(1) not in ("'",):
    return [m.group(1), m.group(2)]
  return [token]


def tokenize_caption(text):
  """Returns the toolkit's tokenised, lower-cased, punctuation-free caption (str)."""
  for k, v in _UNICODE.items():
    text = text.replace(k, v)
  text = "".join(c for c in text if ord(c) <= 0xFFFF)  # Java drops these as untokenizable.
  out = []
  for chunk in text.split():
    for tok in _TOKEN.findall(chunk):
      if tok.startswith("..") and set(tok) == {"."}:
        tok = "..."
      elif tok.startswith("--") and set(tok) == {"-"}:
        tok = "--"
      elif tok in ("\"",):
        tok = "''"
      tok = _BRACKETS.get(tok, tok)
      for piece in _split_word(tok) if tok[:1].isalnum() or tok[:1] == "'" else [tok]:
        if piece not in DROP:
          out.append(piece.lower())
  return " ".join(out)


def tokenize(captions_for_image):
  """Tokenises {key: [caption str, ...]} into {key: [tokenised str, ...]}."""
  return {k: [tokenize_caption(c) for c in caps] for k, caps in captions_for_image.items()}
