"""What the frozen part of the text encoder makes of each distinct text, computed once.

With a frozen encoder (`fine_tune_layers=0`) the train step encodes every distinct query and
product text of the splits once, and the layers above it (projections, interactions,
experts, towers) train on the looked-up vectors at MLP speed; with `0 < k < all` it stores the
token vectors entering the first trained block, and only the top k blocks run per step.

Encoding sorts the texts by token count and pads each batch only to its longest text
(attention and mean pooling mask the padding out, so the result does not depend on it).

The cache is a plain directory that a later run reuses while the encoder and the texts are
unchanged: one folder per encoder fingerprint (a hash of its weights, vocabulary, pooling,
packed lengths and trained layers) holding `keys.npy` (a 16-byte BLAKE2b digest of each text
with its side), `offsets.npy` (row offsets, int64 [n + 1]) and `values.npy` (float32 rows:
one per text when frozen, one per token otherwise). New texts are encoded and appended;
nothing already there is encoded again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from components import disk_faults
from model.encoder import TextEncoder

ENCODE_BATCH = 128
INFO_FILE = "info.json"


def text_keys(side: str, texts) -> np.ndarray:
    """16-byte digests of (side, text): the cache's keys."""
    prefix = side.encode() + b"\0"
    return np.array(
        [hashlib.blake2b(prefix + t, digest_size=16).digest() for t in texts], dtype="S16"
    )


def encoder_fingerprint(encoder: TextEncoder, preprocessor) -> str:
    """A hash of everything that decides the cached values: weights, tokenizer, lengths."""
    digest = hashlib.sha256()
    setup = {
        "pooling": encoder.pooling,
        "trained_blocks": encoder.trained_blocks,
        "blocks": encoder.num_blocks,
        "query_length": preprocessor.query_length,
        "product_length": preprocessor.product_length,
        # Without the layer names, which Keras numbers per process.
        "backbone": _unnamed(encoder.backbone.get_config()),
        "tokenizer": _unnamed(preprocessor.tokenizer.get_config()),
    }
    digest.update(json.dumps(setup, sort_keys=True, default=str).encode())
    vocabulary = preprocessor.tokenizer.get_vocabulary()
    digest.update("\n".join(vocabulary).encode())
    for weight in encoder.backbone.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight)).tobytes())
    return digest.hexdigest()[:24]


def _unnamed(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "name"}


@dataclasses.dataclass
class EncodedTexts:
    """Ragged rows per text: text i owns values[offsets[i]:offsets[i + 1]]."""

    offsets: np.ndarray
    values: np.ndarray

    @property
    def pooled(self) -> bool:
        return len(self.values) == len(self.offsets) - 1

    def vectors(self) -> np.ndarray:
        """[n, d] for pooled (frozen-encoder) rows."""
        if not self.pooled:
            raise ValueError("these are token vectors, not one vector per text")
        return self.values


class TextCache:
    """Encoded texts of one encoder, kept in `directory/<fingerprint>/`.

    Args:
        directory: the cache root (created when missing).
        encoder: the `TextEncoder`; its trained blocks decide what is stored.
        preprocessor: the `TextPreprocessor` (tokenizer and packed lengths).
    """

    def __init__(self, directory: str, encoder: TextEncoder, preprocessor):
        self.encoder = encoder
        self.preprocessor = preprocessor
        self.fingerprint = encoder_fingerprint(encoder, preprocessor)
        self.path = os.path.join(directory, self.fingerprint)
        self.stats = {"texts_encoded": 0, "texts_reused": 0, "encode_seconds": 0.0}
        self._lower = None
        self._encode = None

    def get(self, side: str, texts) -> EncodedTexts:
        """Rows for `texts` (bytes) on `side` ("query" or "product"), in their order; texts
        missing from the cache are encoded and stored first."""
        keys = text_keys(side, texts)
        stored = self._load()
        index = {k: i for i, k in enumerate(stored["keys"])}
        missing = sorted({k for k in keys if k not in index})
        if missing:
            first = {}
            for k, t in zip(keys, texts, strict=True):
                first.setdefault(k, t)
            start = time.monotonic()
            new = self._encode_texts(side, [first[k] for k in missing])
            self.stats["encode_seconds"] += time.monotonic() - start
            stored = self._append(stored, np.array(missing, dtype="S16"), new)
            index = {k: i for i, k in enumerate(stored["keys"])}
        self.stats["texts_encoded"] += len(missing)
        self.stats["texts_reused"] += len(set(keys.tolist())) - len(missing)
        rows = np.array([index[k] for k in keys], dtype=np.int64)
        return _take(stored["offsets"], stored["values"], rows)

    # Storage.

    def _load(self) -> dict:
        names = ("keys", "offsets", "values")
        if not all(os.path.exists(os.path.join(self.path, f"{n}.npy")) for n in names):
            width = self.encoder.output_dim
            return {
                "keys": np.zeros([0], "S16"),
                "offsets": np.zeros([1], np.int64),
                "values": np.zeros([0, width], np.float32),
            }
        return {n: np.load(os.path.join(self.path, f"{n}.npy")) for n in names}

    def _append(self, stored: dict, keys: np.ndarray, new: EncodedTexts) -> dict:
        merged = {
            "keys": np.concatenate([stored["keys"], keys]),
            "offsets": np.concatenate([stored["offsets"], stored["offsets"][-1] + new.offsets[1:]]),
            "values": np.concatenate([stored["values"], new.values]),
        }
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".staging-", dir=os.path.dirname(self.path) or ".")
        try:
            for name, array in merged.items():
                path = os.path.join(staging, f"{name}.npy")
                with disk_faults.writing(path):
                    np.save(path, array)
            path = os.path.join(staging, INFO_FILE)
            with disk_faults.writing(path), open(path, "w", encoding="utf-8") as fh:
                json.dump(
                    {
                        "fingerprint": self.fingerprint,
                        "texts": len(merged["keys"]),
                        "trained_blocks": self.encoder.trained_blocks,
                        "pooled": self.encoder.trained_blocks == 0,
                    },
                    fh,
                )
        except BaseException:
            # A full or read-only volume: the cache stays as it was, without this part.
            shutil.rmtree(staging, ignore_errors=True)
            raise
        old = None
        if os.path.isdir(self.path):
            old = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(self.path))
            os.rename(self.path, os.path.join(old, "x"))
        os.rename(staging, self.path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return merged

    # Encoding.

    def _encode_texts(self, side: str, texts: list[bytes]) -> EncodedTexts:
        ids, masks = self._tokenize(side, texts)
        lengths = masks.sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        pooled = self.encoder.trained_blocks == 0
        out: list = [None] * len(texts)
        for start in range(0, len(texts), ENCODE_BATCH):
            rows = order[start : start + ENCODE_BATCH]
            width = max(int(lengths[rows].max()), 1)
            encoded = self._run(ids[rows, :width], masks[rows, :width]).numpy()
            for j, row in enumerate(rows):
                out[row] = encoded[j : j + 1] if pooled else encoded[j, : lengths[row]]
        counts = np.array([len(o) for o in out], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return EncodedTexts(offsets, np.concatenate(out).astype(np.float32))

    def _tokenize(self, side: str, texts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        empty = tf.zeros([0], tf.string)
        ids, masks = [], []
        for start in range(0, len(texts), 4096):
            chunk = tf.constant(texts[start : start + 4096])
            query, product = (chunk, empty) if side == "query" else (empty, chunk)
            tokens = self.preprocessor(query, product)
            ids.append(np.asarray(tokens[f"{side}_token_ids"], np.int32))
            masks.append(np.asarray(tokens[f"{side}_padding_mask"], np.int32))
        return np.concatenate(ids), np.concatenate(masks)

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> tf.Tensor:
        if self._encode is None:
            encoder = self.encoder
            if encoder.trained_blocks == 0:

                def encode(ids, mask):
                    return encoder({"token_ids": ids, "padding_mask": mask}, training=False)
            else:
                lower = encoder.lower_model()

                def encode(ids, mask):
                    return lower(encoder.lower_inputs(ids, mask), training=False)

            spec = tf.TensorSpec([None, None], tf.int32)
            self._encode = tf.function(encode, input_signature=[spec, spec])
        return self._encode(tf.constant(ids), tf.constant(mask))


def _take(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> EncodedTexts:
    starts, ends = offsets[rows], offsets[rows + 1]
    counts = ends - starts
    if np.all(counts == 1):
        return EncodedTexts(np.arange(len(rows) + 1, dtype=np.int64), values[starts])
    flat = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
    return EncodedTexts(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), values[flat])
