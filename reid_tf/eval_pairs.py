"""`tools/eval.py --verification` and `--calibrate`: the 'same person?' figures of a query/gallery
set, and the calibration fitted on identities the model did not train on."""

from __future__ import annotations

import os

import numpy as np

from reid_tf import calibration, datasets, eval_sets, evaluate, exported, metrics, plots, verification
from reid_tf import config as config_lib


def histograms(arrays: dict, protocol: str) -> verification.PairHistograms:
    """The pair histograms of embedded query and gallery sets, the pairs the protocol ranks."""
    q_cams, g_cams = arrays["query_camids"], arrays["gallery_camids"]
    evaluate.check_cameras(q_cams, g_cams, protocol, "the query/gallery set")
    if protocol in ("no_cameras", "original"):  # neither removes same-camera pairs: only a query's own file
        files = eval_sets.files_of(arrays)
        q_cams, g_cams = evaluate.file_cameras(files.get("query_files"), files.get("gallery_files"),
                                               len(q_cams), len(g_cams))
    return verification.pair_histograms(arrays["query_features"], arrays["gallery_features"], arrays["query_pids"],
                                        arrays["gallery_pids"], q_cams, g_cams)


def lines(figures: dict) -> list[str]:
    """The verification figures as printed."""
    tars = ", ".join(f"{k.removeprefix('tar_at_')} {'too few pairs' if v is None else f'{v:.4f}'}"
                     for k, v in figures.items() if k.startswith("tar_at_"))
    return [f"verification: {figures['pairs_positive']:,} positive and {figures['pairs_negative']:,} negative pairs,"
            f" distances to {figures['bin_width']:.2g} (the bin width)",
            f"  TAR at {tars}; EER {figures['eer']:.4f}; ROC AUC {figures['roc_auc']:.4f}",
            "  thresholds (same person when distance <= d): " + ", ".join(
                f"{k} {'too few pairs' if v is None else f'{v:.4f}'}" for k, v in figures["thresholds"].items())]


def verify(arrays: dict, protocol: str, plot_dir: str | None, name: str) -> dict:
    """The verification figures of `arrays` (printed, and pictured in `plot_dir`)."""
    h = histograms(arrays, protocol)
    figures = verification.summary(h)
    print("\n".join(lines(figures)))
    if plot_dir:
        os.makedirs(plot_dir, exist_ok=True)
        path = os.path.join(plot_dir, "verification.png")
        plots.verification_picture(h, figures, path, f"{name} ({protocol} protocol)")
        print(f"verification picture: {path}")
    return {f"verification_{k}": v for k, v in figures.items()}


def validation_records(model: exported.Exported) -> tuple[list, list, dict]:
    """The run's validation identities (held out of its training), as the run split them."""
    cfg = config_lib.RunConfig.from_dict(model.metadata.get("config", {}))
    if not model.metadata.get("config"):
        raise eval_sets.EvalError(f"{model.path} does not record its run: give --dataset and --data_dir (identities"
                                 " the model did not train on)")
    splits = datasets.split_records(datasets.load_training_sets(cfg.data), cfg.data, cfg.train.seed)
    query, gallery = splits["valid"]
    if not query:
        raise eval_sets.EvalError("the run held out no validation identities (--valid_ids=0): give --dataset and"
                                 " --data_dir of identities the model did not train on")
    return query, gallery, {"identities": "the run's validation identities", "dataset": cfg.data.dataset,
                            "valid_ids": cfg.data.valid_ids, "seed": cfg.train.seed}


def calibrate(model_path: str, scoring: config_lib.ScoringConfig, output: str = "", dataset: str = "",
              data_dir: str = "", cuhk03_labels: str | None = None, query_dir: str = "", gallery_dir: str = "",
              batch_size: int = 64, flip: bool = False) -> dict:
    """Fit the calibration on the given identities (else the run's validation identities), write it to
    `output` (default: calibration.json beside the model) and return it."""
    if not model_path:
        raise eval_sets.EvalError("--calibrate needs --model=EXPORT_OR_RUN_FOLDER (the images are embedded)")
    try:
        model = exported.open_export(model_path)
        if dataset or query_dir:
            query, gallery = eval_sets.test_records(model, dataset, data_dir, cuhk03_labels, query_dir, gallery_dir)
            what = {"identities": "given", "dataset": query_dir and f"{query_dir} | {gallery_dir}" or dataset,
                    "data_dir": data_dir}
        else:
            query, gallery, what = validation_records(model)
        arrays = eval_sets.embed_split(model, query, gallery, batch_size, flip)
        h = histograms(arrays, scoring.protocol)
        unit = {k: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) if k.endswith("features") else v
                for k, v in arrays.items()}
        normalised = histograms(unit, scoring.protocol)
    except (metrics.MetricsError, datasets.DatasetError, exported.ExportedModelError, OSError, ValueError) as e:
        raise eval_sets.EvalError(str(e).splitlines()[0]) from None
    ids = np.unique(np.concatenate([arrays["query_pids"], arrays["gallery_pids"]]))
    fitted = calibration.fit(h, {**what, "protocol": scoring.protocol, "num_identities": int(len(ids)),
                                 "queries": len(query), "gallery": len(gallery), "model": model.path,
                                 "model_identity": calibration.model_key(model.identity)}, normalised)
    path = output or calibration.default_path(model.path)
    calibration.write(path, fitted)
    print("\n".join(lines({**fitted["verification"], "thresholds": fitted["thresholds"]})))
    print(f"calibration: {path}")
    return fitted
