"""The local runner: the MLPR pipeline on this machine through kfp.local, with a live view,
step logs and a summary (`./dev demo`; k8s/run_pipeline.py is the cluster's runner)."""
