"""reid_tf: batch-hard triplet person re-identification in TensorFlow 2 / Keras 3."""

from setuptools import find_packages, setup

setup(
    name="reid_tf",
    version="0.1.0",
    description="TriNet-style person re-identification trainer for TensorFlow 2 / Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["reid_tf", "reid_tf.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "tensorboard",  # tf.summary; TF 2.20+ no longer installs it
        "numpy",
        "scipy",
        "absl-py",
        "pillow",
        "matplotlib",  # tools/eval.py --plot_dir, the CMC curve and retrieval pictures
    ],
    extras_require={
        # gRPC client of tools/serving_client.py.
        "serving": ["tensorflow-serving-api"],
        # --format=tflite checks (and tools/eval.py runs) the model in LiteRT's own interpreter.
        "tflite": ["ai-edge-litert"],
        # --format=onnx: the converter, and ONNX Runtime to check and run the model.
        "onnx": ["tf2onnx", "onnxruntime"],
        # --cluster=kubernetes: the Kubernetes API client TensorFlow's resolver asks for the pods.
        "kubernetes": ["kubernetes"],
        # tools/gallery.py's exact search on faiss's flat index (numpy gives the same results without it).
        "search": ["faiss-cpu"],
        # Pseudo-identities of unlabeled target images (reid_tf.clusters): scikit-learn's DBSCAN and NMI.
        "adapt": ["scikit-learn"],
        # tools/convert_torchreid.py reads PyTorch checkpoints; its CPU build is enough.
        "torch": ["torch"],
        # The tests check our networks against torchreid's own model files, and the tracker export against
        # boxmot's crop pipeline (OpenCV). "torch<2.14" takes the CPU wheel where pip finds one (a local
        # wheel, or PyTorch's CPU index); torchreid 0.2.5 is the deep-person-reid code packaged for pip.
        # pytest-xdist: the suite runs in four worker processes (pyproject.toml's addopts), each test file in one.
        "test": ["pytest", "pytest-xdist", "ruff", "tensorflow-serving-api", "ai-edge-litert", "tf2onnx", "onnxruntime",
                 "faiss-cpu", "opencv-python-headless", "torch<2.14", "torchreid==0.2.5", "scikit-learn"],
    },
)
