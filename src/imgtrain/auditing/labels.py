"""Likely label errors: out-of-sample probabilities from k-fold training of a small model, ranked by cleanlab.

The small model is a multinomial logistic regression on each image's features (a 16x16 RGB thumbnail,
standardized); each image is scored by the model of the fold that did not see it, so a wrong label cannot
vouch for itself. cleanlab's confident learning (Northcutt et al., 2021) then names the images whose given
label the probabilities contradict, ranked by the probability of the given label (lowest first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

FOLDS = 5


def out_of_sample_probabilities(features: np.ndarray, labels: np.ndarray, seed: int = 0,
                                folds: int = FOLDS) -> np.ndarray:
    """(images, classes) probabilities, each row from the fold model that did not train on that image."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=300))
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, features.astype(np.float32) / 255, labels, cv=splits, method="predict_proba")


def label_issues(features: np.ndarray, labels: np.ndarray, classes: list[str], seed: int = 0
                 ) -> dict[str, Any]:
    """The images whose label the out-of-sample probabilities contradict, most doubtful first; or why not run."""
    from cleanlab.filter import find_label_issues  # present: audit() checks its libraries before any work
    counts = np.bincount(labels, minlength=len(classes))
    folds = min(FOLDS, int(counts.min()))
    if len(classes) < 2 or folds < 2:
        return {"checked": False, "reason": "the label check needs at least 2 classes with at least 2 images each",
                "issues": []}
    probs = out_of_sample_probabilities(features, labels, seed, folds)
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    issues = [{"position": int(i), "given": classes[labels[i]], "suggested": classes[int(probs[i].argmax())],
               "given_probability": float(probs[i, labels[i]])} for i in ranked]
    accuracy = float((probs.argmax(1) == labels).mean())
    return {"checked": True, "method": f"{folds}-fold logistic regression on 16x16 thumbnails, cleanlab "
            "find_label_issues ranked by self-confidence", "out_of_sample_accuracy": accuracy, "issues": issues}
