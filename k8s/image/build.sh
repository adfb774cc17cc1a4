#!/usr/bin/env bash
# Build the component image and push it to its registry (needs Docker; run it anywhere).
#
#   k8s/image/build.sh            build and push the image components/images.py names
#   k8s/image/build.sh --no-push  build only
#
# The compiled pipeline runs exactly that image: to use another registry, change REGISTRY in
# components/images.py, run ./dev compile, then this script.
set -euo pipefail
cd "$(dirname "$0")/../.."

push=1
case "${1:-}" in
  "") ;;
  --no-push) push=0 ;;
  *)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

# components/images.py is plain Python with no imports: any python3 reads it.
image=$(python3 -c 'import runpy; print(runpy.run_path("components/images.py")["BASE_IMAGE"])')
echo "Building $image" >&2
docker build --platform linux/amd64 -f k8s/image/Dockerfile -t "$image" .
if [ "$push" = 1 ]; then
  docker push "$image"
  echo "Pushed $image" >&2
fi
