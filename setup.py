"""Package discovery for the one-namespace layout (DESIGN.md section 1).

The design's top-level folders (pipeline/, services/, models/, compression/)
are installed as subpackages of ``fuxiops``; their own subpackages are found
automatically so that adding a folder needs no edit here.
"""

from setuptools import find_packages, setup

LAYERS = {
    "fuxiops": "fuxiops",
    "fuxiops.pipeline": "pipeline",
    "fuxiops.services": "services",
    "fuxiops.models": "models",
    "fuxiops.compression": "compression",
}

packages: list[str] = []
for namespace, folder in LAYERS.items():
    packages.append(namespace)
    packages += [f"{namespace}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=LAYERS)
