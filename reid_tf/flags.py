"""Every absl flag of the project, and the translation of parsed flags into a RunConfig.

Entry points call the `define_*` functions they need; library modules never read FLAGS.
"""

from __future__ import annotations

import sys
import textwrap

from absl import app, flags

from reid_tf import config as config_lib
from reid_tf.config import (
    AUGMENTATIONS,
    BACKBONES,
    CLUSTERS,
    CUHK03_LABELS,
    DATASETS,
    EXPORT_FORMATS,
    HEAD_INITS,
    HEADS,
    LR_SCHEDULES,
    MAX_IMAGE_PIXELS,
    MAX_IMAGES_PER_REQUEST,
    MININGS,
    MIXED_PRECISION,
    NECK_FEATS,
    NECKS,
    OUTPUT_ACTIVATIONS,
    POOLINGS,
    PRECISIONS,
    PROTOCOLS,
    QUANTIZATIONS,
    TRAINABLE,
)

FLAGS = flags.FLAGS


def _margin_ok(value: str) -> bool:
    if value == "soft":
        return True
    try:
        return float(value) >= 0
    except ValueError:
        return False


def _numbers_ok(values: list[str], kind=float) -> bool:
    try:
        return all(kind(v) >= 0 for v in values)
    except ValueError:
        return False


# ---------------------------------------------------------------------------- help

_MARKS: list[tuple[str, int]] = []  # (group title, number of this module's flags before it)


def _ours() -> list:
    return FLAGS.get_flags_for_module(__name__)


def _group(title: str) -> None:
    """The flags defined from here to the next call are listed under `title` by --help."""
    _MARKS.append((title, len(_ours())))


def _describe(flag) -> list[str]:
    default = flag.default
    if isinstance(flag, flags.BooleanFlag):
        head = f"  --[no]{flag.name}  (default: {'true' if default else 'false'})"
    elif default in (None, "", []):
        head = f"  --{flag.name}" + ("  (required)" if flag.name in _REQUIRED else "")
    else:
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        head = f"  --{flag.name}={shown}"
    return [head] + textwrap.wrap(flag.help, 96, initial_indent="      ", subsequent_indent="      ")


def usage(doc: str | None) -> str:
    """The project's own flags with their help and defaults, by group (nothing of absl's or TF's)."""
    ours = _ours()
    lines = [(doc or "").strip(), ""]
    marks = _MARKS or [("Flags", 0)]
    for i, (title, start) in enumerate(marks):
        end = marks[i + 1][1] if i + 1 < len(marks) else len(ours)
        if end > start:
            lines += [f"{title}:"] + [line for flag in ours[start:end] for line in _describe(flag)] + [""]
    lines.append("--helpfull lists every flag, absl's and TensorFlow's included.")
    return "\n".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
    """`app.run`'s flags parser: --help (and -h, --helpshort) print `usage` of the running tool."""
    if any(arg in ("-h", "-?", "--help", "--helpshort") for arg in argv[1:]):
        print(usage(sys.modules["__main__"].__doc__))
        sys.exit(0)
    return app.parse_flags_with_usage(argv)


_REQUIRED = {"output_dir", "export_dir", "images"}


def define_train_flags() -> None:
    """Flags of `python -m reid_tf.train`: data, model, loss, optimiser and loop."""
    d, m = config_lib.DataConfig(), config_lib.ModelConfig()
    o, t = config_lib.OptimizerConfig(), config_lib.TrainConfig()
    _group("Data")
    flags.DEFINE_string("dataset", d.dataset, f"Dataset layout of --data_dir: {', '.join(DATASETS)};"
                        " several comma-separated (market1501,msmt17) train on their union, identities"
                        " and cameras kept apart.")
    flags.register_validator("dataset", lambda v: all(n.strip() in DATASETS for n in v.split(",")),
                             f"--dataset must name datasets among {', '.join(DATASETS)}, comma-separated")
    flags.DEFINE_string("data_dir", d.data_dir,
                        "Dataset folder (the layout of --dataset, or the image root of --train_csv);"
                        " one per dataset, comma-separated. With --dataset=synthetic, empty means a"
                        " cache folder.")
    flags.DEFINE_string("valid_dataset", d.valid_dataset,
                        "With several datasets: the one validation identities are held out of"
                        " (default: the first).")
    flags.DEFINE_enum("cuhk03_labels", d.cuhk03_labels, CUHK03_LABELS,
                      "CUHK03-NP: the detected or the hand-labeled boxes.")
    flags.DEFINE_boolean("msmt17_merge_val", d.msmt17_merge_val,
                         "MSMT17: train on list_val.txt's images too, as torchreid and fast-reid do.")
    flags.DEFINE_string("train_csv", d.train_csv, "CSV list 'pid,path[,camid]' for --dataset=csv.")
    flags.DEFINE_integer("image_height", d.image_height, "Input height.", lower_bound=32)
    flags.DEFINE_integer("image_width", d.image_width, "Input width.", lower_bound=32)
    flags.DEFINE_enum("augment", d.augment, AUGMENTATIONS, "Training augmentation level.")
    flags.DEFINE_integer("return_id_num", d.return_id_num, "P: identities per batch.", lower_bound=2)
    flags.DEFINE_integer("image_num_every_id", d.image_num_every_id,
                         "K: images per identity (>= 2, or there are no positives).", lower_bound=2)
    flags.DEFINE_integer("valid_ids", d.valid_ids,
                         "Training identities held out for validation (0: none).", lower_bound=0)
    flags.DEFINE_integer("train_eval_ids", d.train_eval_ids,
                         "Training identities scored for the train-set mAP (0: none).", lower_bound=0)
    flags.DEFINE_integer("synthetic_ids", d.synthetic_ids,
                         "Identities of the generated synthetic dataset.", lower_bound=4)
    _group("Model")
    flags.DEFINE_enum("backbone", m.backbone, BACKBONES, "Backbone network.")
    flags.DEFINE_string("backbone_weights", m.backbone_weights, "imagenet, none, or a weights file.")
    flags.DEFINE_enum("pooling", m.pooling, POOLINGS, "Pooling after the backbone; none = flatten.")
    flags.DEFINE_enum("head", m.head, HEADS,
                      "fc1024: fc1(1024)-BN-ReLU-fc2(D); fc: one fc(D); none: the pooled feature (BoT).")
    flags.DEFINE_integer("embedding_dim", m.embedding_dim, "D, the embedding size.", lower_bound=1)
    flags.DEFINE_enum("output_activation", m.output_activation, OUTPUT_ACTIVATIONS,
                      "Activation on the embedding.")
    flags.DEFINE_float("dropout", m.dropout, "Dropout rate before the last fc.",
                       lower_bound=0.0, upper_bound=0.99)
    flags.DEFINE_enum("head_init", m.head_init, HEAD_INITS, "Initialiser of the head's fc kernels.")
    flags.DEFINE_float("head_init_stddev", m.head_init_stddev,
                       "Stddev of the truncated-normal head init.", lower_bound=0.0)
    flags.DEFINE_enum("trainable", m.trainable, TRAINABLE, "all: fine-tune the backbone too.")
    flags.DEFINE_enum("neck", m.neck, NECKS,
                      "bnneck: a BatchNorm (shift frozen at 0) after the embedding; the triplet loss"
                      " sees the feature before it, the ID loss the one after (BoT).")
    flags.DEFINE_enum("neck_feat", m.neck_feat, NECK_FEATS,
                      "With --neck=bnneck: the feature evaluation and exports output.")
    flags.DEFINE_enum("last_stride", str(m.last_stride), ("1", "2"),
                      "Stride of the ResNet's last downsampling (BoT: 1, a 2x larger feature map).")
    _group("Loss")
    flags.DEFINE_string("margin", config_lib.LossConfig().margin, "soft, or a hinge margin >= 0.")
    flags.register_validator("margin", _margin_ok, "--margin must be 'soft' or a number >= 0")
    flags.DEFINE_enum("mining", config_lib.LossConfig().mining, MININGS, "Triplet mining.")
    flags.DEFINE_float("id_loss_weight", 0.0, "Weight of the cross-entropy ID loss (0 = off; BoT: 1).",
                       lower_bound=0.0)
    flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing of the ID loss (BoT: 0.1).",
                       lower_bound=0.0, upper_bound=0.99)
    flags.DEFINE_float("center_loss_weight", 0.0, "Weight of the center loss (0 = off; BoT: 5e-4).",
                       lower_bound=0.0)
    flags.DEFINE_float("center_learning_rate", 0.5, "SGD learning rate of the centres (BoT: 0.5).",
                       lower_bound=0.0)
    _group("Optimiser")
    flags.DEFINE_float("initial_learning_rate", o.initial_learning_rate, "Adam's learning rate.",
                       lower_bound=0.0)
    flags.DEFINE_float("decay_rate", o.decay_rate, "Exponential decay factor per decay_steps.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("decay_steps", o.decay_steps, "Steps per decay_rate.", lower_bound=1)
    flags.DEFINE_boolean("staircase", o.staircase, "Decay in steps rather than smoothly.")
    flags.DEFINE_enum("lr_schedule", o.lr_schedule, LR_SCHEDULES,
                      "exponential: by --decay_rate every --decay_steps; piecewise: --lr_values between"
                      " --lr_boundaries (--initial_learning_rate unused); cosine: to 0 over --decay_steps.")
    flags.DEFINE_list("lr_boundaries", [], "Piecewise schedule: the steps where the rate changes.")
    flags.register_validator("lr_boundaries", lambda v: _numbers_ok(v, int),
                             "--lr_boundaries must be whole numbers of steps, e.g. 8080,14140")
    flags.DEFINE_list("lr_values", [], "Piecewise schedule: the rates, one more than --lr_boundaries.")
    flags.register_validator("lr_values", _numbers_ok, "--lr_values must be numbers >= 0")
    flags.DEFINE_integer("warmup_steps", o.warmup_steps, "Linear warm-up steps (0 = none).",
                         lower_bound=0)
    flags.DEFINE_float("warmup_factor", o.warmup_factor,
                       "The warm-up starts at this fraction of the scheduled rate.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("weight_decay", o.weight_decay,
                       "L2 penalty wd/2*|w|^2 on every trained weight, as PyTorch Adam's weight_decay"
                       " (BoT: 5e-4).", lower_bound=0.0)
    _group("Run")
    flags.DEFINE_integer("max_steps", t.max_steps, "Train until this step.", lower_bound=0)
    flags.DEFINE_string("output_dir", "runs/default", "Run folder: config, checkpoints, logs, export.")
    flags.DEFINE_integer("checkpoint_every", t.checkpoint_every, "Steps between checkpoints.",
                         lower_bound=1)
    flags.DEFINE_integer("keep_checkpoints", t.keep_checkpoints,
                         "Checkpoints kept in the run folder (the newest; each is the model and Adam's"
                         " state, 310 MB for ResNet50).", lower_bound=1)
    flags.DEFINE_integer("eval_every", t.eval_every, "Steps between validations.", lower_bound=1)
    flags.DEFINE_boolean("eval_rerank", t.eval_rerank, "Also score validation with re-ranking.")
    flags.DEFINE_boolean("projector", t.projector,
                         "At the end, write the validation embeddings for TensorBoard's Embedding Projector"
                         " (OUTPUT_DIR/tensorboard/projector).")
    flags.DEFINE_boolean("eval_before_training", t.eval_before_training,
                         "Validate once before the first step.")
    flags.DEFINE_integer("log_every", t.log_every, "Steps between console lines and summaries.",
                         lower_bound=1)
    flags.DEFINE_string("init_checkpoint", t.init_checkpoint,
                        "Warm start: model weights from another run's folder or checkpoint.")
    flags.DEFINE_integer("seed", t.seed, "Random seed.")
    flags.DEFINE_string("note", "", "A note on the experiment, kept in the run folder (note.txt), not"
                        " in its configuration: change it on resume at will. Shown by tools/report.py.")
    flags.DEFINE_enum("mixed_precision", t.mixed_precision, MIXED_PRECISION,
                      "Compute dtype of the model (the loss stays float32).")
    flags.DEFINE_boolean("jit_compile", t.jit_compile, "Compile the train step with XLA.")
    _group("Several machines")
    flags.DEFINE_enum("cluster", "tf_config", CLUSTERS,
                      "Where the workers come from: tf_config (the TF_CONFIG variable; none = one machine),"
                      " slurm (the srun job step, one task per node), kubernetes (an Indexed Job's pods).")
    flags.DEFINE_integer("cluster_port", 23456, "With --cluster=slurm|kubernetes: the port every worker"
                         " listens on.", lower_bound=1, upper_bound=65535)
    flags.DEFINE_string("kubernetes_job", "reid-train", "With --cluster=kubernetes: the Indexed Job's name"
                        " (its pods carry job-name=NAME; see docs/kubernetes.yaml).")
    flags.DEFINE_float("heartbeat_timeout", 10.0, "Seconds without a heartbeat after which TensorFlow's"
                       " coordination service takes a worker for lost (every worker then exits); a busy"
                       " worker keeps sending heartbeats.", lower_bound=1.0)


def config_from_flags() -> config_lib.RunConfig:
    """The RunConfig that the parsed train flags describe."""
    f = FLAGS
    return config_lib.RunConfig(
        data=config_lib.DataConfig(
            dataset=f.dataset, data_dir=f.data_dir, train_csv=f.train_csv, valid_dataset=f.valid_dataset,
            cuhk03_labels=f.cuhk03_labels, msmt17_merge_val=f.msmt17_merge_val,
            image_height=f.image_height, image_width=f.image_width, augment=f.augment,
            return_id_num=f.return_id_num, image_num_every_id=f.image_num_every_id,
            valid_ids=f.valid_ids, train_eval_ids=f.train_eval_ids, synthetic_ids=f.synthetic_ids,
        ),
        model=config_lib.ModelConfig(
            backbone=f.backbone, backbone_weights=f.backbone_weights, pooling=f.pooling,
            head=f.head, embedding_dim=f.embedding_dim, output_activation=f.output_activation,
            dropout=f.dropout, head_init=f.head_init, head_init_stddev=f.head_init_stddev,
            trainable=f.trainable, neck=f.neck, neck_feat=f.neck_feat, last_stride=int(f.last_stride),
        ),
        loss=config_lib.LossConfig(
            margin=f.margin, mining=f.mining, id_loss_weight=f.id_loss_weight,
            label_smoothing=f.label_smoothing, center_loss_weight=f.center_loss_weight,
            center_learning_rate=f.center_learning_rate,
        ),
        optimizer=config_lib.OptimizerConfig(
            initial_learning_rate=f.initial_learning_rate, decay_rate=f.decay_rate,
            decay_steps=f.decay_steps, staircase=f.staircase, lr_schedule=f.lr_schedule,
            lr_boundaries=tuple(int(b) for b in f.lr_boundaries),
            lr_values=tuple(float(v) for v in f.lr_values), warmup_steps=f.warmup_steps,
            warmup_factor=f.warmup_factor, weight_decay=f.weight_decay,
        ),
        train=config_lib.TrainConfig(
            max_steps=f.max_steps, checkpoint_every=f.checkpoint_every,
            keep_checkpoints=f.keep_checkpoints, eval_every=f.eval_every,
            eval_rerank=f.eval_rerank, eval_before_training=f.eval_before_training, projector=f.projector,
            log_every=f.log_every, init_checkpoint=f.init_checkpoint, seed=f.seed,
            mixed_precision=f.mixed_precision, jit_compile=f.jit_compile,
        ),
    )


def train_flags_file() -> str:
    """The effective train flags as flagfile text, reusable with --flagfile."""
    names = sorted(flags.FLAGS.get_key_flags_for_module("reid_tf.flags"), key=lambda f: f.name)
    return "".join(f.serialize() + "\n" for f in names)


def define_export_flags() -> None:
    """Flags of `python -m reid_tf.export`."""
    _group("Export")
    flags.DEFINE_string("output_dir", None, "The training run folder.", required=True)
    flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the latest).")
    flags.DEFINE_string("export_dir", None, "Base folder; the model goes to DIR/<version>/.",
                        required=True)
    flags.DEFINE_integer("version", None, "Version folder name (default: the step).")
    flags.DEFINE_boolean("overwrite", False, "Replace an existing version.")
    flags.DEFINE_integer("max_images_per_request", MAX_IMAGES_PER_REQUEST,
                         "Images one request may carry; more is refused.", lower_bound=1)
    flags.DEFINE_integer("max_image_pixels", MAX_IMAGE_PIXELS,
                         "serving_bytes refuses an image whose header claims more pixels.",
                         lower_bound=1)
    flags.DEFINE_enum("format", "saved_model", EXPORT_FORMATS,
                      "saved_model: for TF Serving; tflite: LiteRT for devices; onnx: ONNX Runtime,"
                      " TensorRT, Triton; backbone: the backbone's Keras weights file, to start another"
                      " run from (--backbone_weights=PATH).")
    flags.DEFINE_enum("quantize", "none", QUANTIZATIONS,
                      "With --format=tflite: float16 weights, dynamic_range (int8 weights), or int8"
                      " (full-integer, calibrated on the run's training images).")
    flags.DEFINE_string("data_dir", None, "The run's dataset folder, if not where it was trained"
                        " (images to check the export and to calibrate int8).")
    flags.DEFINE_enum("precision", "float32", PRECISIONS,
                      "What the SavedModel computes in: bfloat16 for CPUs with AVX512_BF16/AMX and"
                      " TPUs, float16 for GPUs. Inputs, weights and outputs stay float32.")
    flags.DEFINE_integer("calibration_images", 300, "Training images that calibrate int8.",
                         lower_bound=1)


def define_eval_flags() -> None:
    """Flags of `tools/eval.py`."""
    _group("What to score")
    flags.DEFINE_string("model", None, "An exported model: a SavedModel version folder, a .tflite or an"
                        " .onnx file, the version folder holding one, or a training run's folder (its"
                        " latest export).")
    flags.DEFINE_string("saved_model", None, "The same as --model (kept for older commands).")
    flags.DEFINE_string("dataset", "", f"The dataset whose test split is scored ({', '.join(DATASETS[:4])},"
                        " synthetic); default: the one the model was trained on.")
    flags.DEFINE_string("data_dir", "", "Its folder; default: where the model was trained (the"
                        " synthetic set: its cache folder).")
    flags.DEFINE_string("cuhk03_labels", "", "CUHK03-NP: detected or labeled (default: the model's, or"
                        " detected).")
    flags.register_validator("cuhk03_labels", lambda v: v in ("",) + CUHK03_LABELS,
                             "--cuhk03_labels must be detected or labeled")
    flags.DEFINE_string("features", None, "A .npz with query/gallery features, pids and camids.")
    _group("Scoring")
    flags.DEFINE_boolean("rerank", False, "Also score with k-reciprocal re-ranking.")
    flags.DEFINE_integer("k1", 20, "Re-ranking k1.", lower_bound=1)
    flags.DEFINE_integer("k2", 6, "Re-ranking k2.", lower_bound=1)
    flags.DEFINE_float("lambda_value", 0.3, "Re-ranking weight of the original distance.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_boolean("flip", False, "Average the embeddings of each image and its mirror.")
    flags.DEFINE_enum("protocol", "market1501", PROTOCOLS, "Scoring protocol.")
    flags.DEFINE_integer("batch_size", 64, "Images per embedding batch.", lower_bound=1)
    _group("Outputs")
    flags.DEFINE_string("output_json", None, "Write the scores as JSON here.")
    flags.DEFINE_string("save_features", None, "Write the embeddings as a features .npz here.")
    flags.DEFINE_string("plot_dir", None, "Write a CMC curve and ranked-retrieval pictures here.")
    flags.DEFINE_integer("plot_queries", 8, "Queries shown in ranked-retrieval pictures.",
                         lower_bound=1)
    flags.DEFINE_string("projector_dir", None, "Write the query and gallery embeddings, their metadata and a"
                        " sprite of the crops here for TensorBoard's Embedding Projector (tensorboard"
                        " --logdir DIR).")
    flags.DEFINE_string("actmap_dir", None, "Write activation maps (torchreid's: the channel-wise squared"
                        " norm of the backbone's last feature map) of --actmap_queries queries here.")
    flags.DEFINE_integer("actmap_queries", 8, "Queries drawn with --actmap_dir.", lower_bound=1)


def define_synthetic_flags() -> None:
    """Flags of `tools/make_synthetic_dataset.py`."""
    _group("Synthetic dataset")
    flags.DEFINE_string("output_dir", None, "Folder to write the dataset into.", required=True)
    flags.DEFINE_integer("num_ids", 200, "Identities in all; half train, half test.", lower_bound=2)
    flags.DEFINE_integer("num_cameras", 6, "Cameras.", lower_bound=2)
    flags.DEFINE_integer("images_per_camera", 3, "Images per identity and camera.", lower_bound=1)
    flags.DEFINE_integer("height", 128, "Image height in pixels.", lower_bound=32)
    flags.DEFINE_integer("width", 64, "Image width in pixels.", lower_bound=16)
    flags.DEFINE_integer("seed", 0, "Random seed.")


def define_serving_client_flags() -> None:
    """Flags of `tools/serving_client.py`."""
    _group("TF Serving client")
    flags.DEFINE_list("images", None, "Image files to embed.", required=True)
    flags.DEFINE_enum("protocol", "rest", ("rest", "grpc"), "How to call TF Serving.")
    flags.DEFINE_string("host", "localhost", "TF Serving host.")
    flags.DEFINE_integer("port", None, "Port (default: 8501 for REST, 8500 for gRPC).")
    flags.DEFINE_string("model_name", "reid", "Model name TF Serving serves.")
    flags.DEFINE_string("signature_name", "serving_bytes", "Signature taking JPEG/PNG bytes.")
    flags.DEFINE_float("timeout", 30.0, "Seconds to wait for an answer.")
    flags.DEFINE_boolean("distance", False, "Print the distance between the first two images.")


def define_report_flags() -> None:
    """Flags of `tools/report.py`."""
    _group("Report")
    flags.DEFINE_string("output", None, "Write the markdown table here (default: print it).")
    flags.DEFINE_string("plot", None, "Write the curves (mAP and loss against step) as a PNG here.")
    flags.DEFINE_string("baseline", None, "The run (name or folder) others are compared with;"
                        " default: the first run.")
    flags.DEFINE_string("json", None, "Write the same data as JSON here.")
    flags.DEFINE_string("reference", None, "A JSON file {run name: text} shown in a column beside the"
                        " result (e.g. the original log's results).")
