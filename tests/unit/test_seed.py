"""The seed's cloud-config is valid YAML carrying the injected host key and the login key."""

import yaml

from goldsmith_provider.builders.common.keys import generate_ed25519
from goldsmith_provider.builders.qemu.seed import user_data


def test_cloud_config_for_a_sudo_user():
    client, host = generate_ed25519("goldsmith-build-x"), generate_ed25519("goldsmith-host-x")
    text = user_data("debian", client, host, "goldsmith")
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc["ssh_keys"]["ed25519_private"] == host.private_openssh
    assert doc["ssh_keys"]["ed25519_public"] == " ".join(host.public_openssh.split()[:2])
    assert doc["ssh_genkeytypes"] == [] and doc["ssh_pwauth"] is False
    (user,) = doc["users"]
    assert user["name"] == "debian" and user["sudo"].endswith("NOPASSWD:ALL")
    assert user["ssh_authorized_keys"] == [client.public_openssh]


def test_cloud_config_for_root():
    client, host = generate_ed25519("c"), generate_ed25519("h")
    doc = yaml.safe_load(user_data("root", client, host, "goldsmith"))
    assert doc["disable_root"] is False
    assert doc["users"][0]["name"] == "root"
