import keras
import keras_hub


@keras.saving.register_keras_serializable(package="mlpr")
class TextPreprocessor(keras.layers.Layer):
    """Tokenizes and packs query and product texts into the ranker's integer inputs.

    Runs TensorFlow (and TF Text) ops, so it works inside `tf.data` pipelines and inside the
    exported serving graph on any Keras backend.

    Args:
        tokenizer: a keras-hub WordPiece tokenizer of the BERT family (has `cls_token_id`,
            `sep_token_id`, `pad_token_id`).
        query_length: packed length of queries, [CLS] and [SEP] included.
        product_length: packed length of product texts.

    Examples:
        >>> tok = keras_hub.models.DistilBertTokenizer(
        ...     vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "shoes"])
        >>> out = TextPreprocessor(tok, 4, 6)(["red shoes"], ["shoes"])
        >>> out["query_token_ids"].numpy().tolist()
        [[2, 5, 6, 3]]
    """

    def __init__(self, tokenizer, query_length=16, product_length=48, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("query_length", query_length), ("product_length", product_length)):
            if int(value) < 3:
                raise ValueError(f"`{name}` must be at least 3, got {value}")
        self.tokenizer = tokenizer
        self.query_length = int(query_length)
        self.product_length = int(product_length)
        self._packers = {
            name: keras_hub.layers.StartEndPacker(
                sequence_length=length,
                start_value=tokenizer.cls_token_id,
                end_value=tokenizer.sep_token_id,
                pad_value=tokenizer.pad_token_id,
                return_padding_mask=True,
            )
            for name, length in (("query", self.query_length), ("product", self.product_length))
        }

    def call(self, query, product_text):
        outputs = {}
        for name, text in (("query", query), ("product", product_text)):
            token_ids, mask = self._packers[name](self.tokenizer(text))
            outputs[f"{name}_token_ids"] = token_ids
            outputs[f"{name}_padding_mask"] = mask
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "query_length": self.query_length,
                "product_length": self.product_length,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)
