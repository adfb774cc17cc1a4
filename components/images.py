"""The container image every component runs in, named in one place.

Built from `k8s/image/Dockerfile` with the project installed from `constraints.txt`.
Compiling the pipeline reads no environment: change the tag here (and rebuild the golden
YAML) to point a cluster at another registry.
"""

PROJECT_VERSION = "0.1.0"
REGISTRY = "ghcr.io/mlpr-project"
BASE_IMAGE = f"{REGISTRY}/mlpr-components:{PROJECT_VERSION}"
