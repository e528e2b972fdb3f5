"""imgtrans-pipeline: translate the text inside images, orchestrated by Dagster."""

__version__ = "0.1.0"
# Bumped whenever a change alters pipeline output; stored in meta.json so old results can be found and redone.
PIPELINE_VERSION = "1"
