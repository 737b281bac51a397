"""The secret-scan e2e test's program: one container image whose provisioners get a Pulumi secret (stack
config set with --secret) through `secret_env`, and Vault values through `secret_env` and a secret file.
The Vault address and token, the registry and the rootfs come from the stack config."""

import pulumi

import goldsmith as gs

config = pulumi.Config()
registry = config.require("registry")
db_password = gs.VaultSecret(path="e2e/app", key="db_password")

image = gs.DockerImage(
    "app",
    gs.DockerImageArgs(
        name="e2e-secrets",
        source=gs.RootfsSource(path=config.require("rootfs")),
        vault=gs.VaultSettings(address=config.require("vaultAddress"), token=config.require_secret("vaultToken")),
        provisioners=[
            gs.File(secret=gs.VaultSecret(path="e2e/app", key="tls_key"), destination="/etc/app/tls.key", mode="0400"),
            gs.Shell(scripts=["scripts/use-secrets.sh"],
                     secret_env={"API_TOKEN": config.require_secret("apiToken"), "DB_PASSWORD": db_password}),
        ],
        config=gs.ImageConfig(cmd=["cat", "/etc/secret-receipt"], env={"APP_MODE": "e2e"}),
        repository=f"{registry}/goldsmith/e2e-secrets",
        registry=gs.RegistrySettings(username=config.require("registryUser"),
                                     password=config.require_secret("registryPassword")),
        network_mode="none",
    ),
)

pulumi.export("image_id", image.image_id)
pulumi.export("image_ref", image.image_ref)
pulumi.export("fingerprint", image.fingerprint)
pulumi.export("build_log", image.build_log)
