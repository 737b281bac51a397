import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# Real Docker peers (an engine, a registry, a Debian rootfs) as session fixtures; started only when a test asks.
pytest_plugins = ["peers.docker_engine"]
# Real AWS peers: a moto server (EC2/SSM API) and one QEMU guest playing the instances behind it.
pytest_plugins += ["peers.moto_server", "peers.ec2_guest"]
