"""Uses of a trained VAE: embeddings, anomaly scores, a generative classifier, inpainting, per-point refinement,
restoration (super-resolution, deblurring, inpainting, denoising).

    from vaekit.apps import VAEEmbedding, anomaly_scores, calibrate_threshold, auroc, inpaint, refine
    z = VAEEmbedding(run_dir="runs/mnist").fit(X).transform(X)          # posterior means, sklearn style
    s = anomaly_scores(model, x)["neg_log_px"]; t = calibrate_threshold(s_normal, fpr=0.05)
    x_filled = inpaint(model, x, named_mask("bottom", model.data_shape))
    res = refine(model, x); res.gap.mean()                                # amortisation gap, nats
    obs = parse_operator("downsample:4+noise:0.1", model.data_shape); r = restore(model, obs.observe(x), obs)

Each module cites the paper it follows; ``vaekit.cli.apps`` wires them to `vaekit embed|anomaly|classify|inpaint|refine`.
"""

from vaekit.apps.anomaly import (SCORES, anomaly_labels, anomaly_scores, auprc, auroc, calibrate_threshold,
                                 reconstruction_error, threshold_report)
from vaekit.apps.classify import (CLASS_SCORES, LATENT_CLASS_SCORES, ClassLatentClassifier, GenerativeClassifier,
                                  accuracy, classification_report, has_class_latent, load_class_runs,
                                  load_classifier_runs)
from vaekit.apps.embed import EMBED_KINDS, VAEEmbedding, embed
from vaekit.apps.inpaint import (INPAINT_METHODS, MASK_NAMES, denoise, inpaint, load_mask, map_latent, masked_mse,
                                 named_mask)
from vaekit.apps.inputs import AppData, load_inputs, train_mean, write_csv
from vaekit.apps.operators import Observation, parse_operator
from vaekit.apps.refine import RefineResult, elbo_with_noise, refine
from vaekit.apps.restore import RestoreResult, restore
from vaekit.apps.restore_baselines import baselines, image_metrics, psnr_ssim

__all__ = [
    "SCORES", "anomaly_scores", "reconstruction_error", "calibrate_threshold", "auroc", "auprc", "anomaly_labels",
    "threshold_report",
    "CLASS_SCORES", "LATENT_CLASS_SCORES", "GenerativeClassifier", "ClassLatentClassifier", "has_class_latent",
    "load_class_runs", "load_classifier_runs", "accuracy", "classification_report",
    "EMBED_KINDS", "embed", "VAEEmbedding",
    "INPAINT_METHODS", "MASK_NAMES", "named_mask", "load_mask", "inpaint", "denoise", "map_latent", "masked_mse",
    "AppData", "load_inputs", "train_mean", "write_csv",
    "RefineResult", "elbo_with_noise", "refine",
    "Observation", "parse_operator", "RestoreResult", "restore", "baselines", "image_metrics", "psnr_ssim",
]
