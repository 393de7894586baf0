"""A byte tokenizer, so the server needs no tokenizer download: id 0 pad, 1 BOS, 2 EOS,
3..258 the bytes of the UTF-8 text. Any other id (the random model emits ids up to the
vocabulary size) decodes to one printable ASCII character, so a completion's text has
exactly one character per generated token."""

PAD, BOS, EOS = 0, 1, 2
BYTE_BASE = 3


def encode(text):
    """Text to ids, BOS first (as Llama tokenizers do)."""
    return [BOS] + [BYTE_BASE + b for b in text.encode("utf-8")]


def decode(ids):
    """Ids to text, one printable character per id."""
    out = []
    for i in ids:
        b = i - BYTE_BASE
        if 32 <= b < 127:
            out.append(chr(b))
        else:
            out.append(chr(32 + (i % 95)))
    return "".join(out)
