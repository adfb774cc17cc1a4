"""The data contract of the whole system, imported by every step, the model and serving:
the raw and transformed schema and the tasks (schema), the artifact layout (layout) and the
feature specs of the records between the steps (features). It imports nothing of theirs."""
