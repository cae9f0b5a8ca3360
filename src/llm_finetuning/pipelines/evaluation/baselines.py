"""Baselines trained on the same training split and scored on the same test split.

A fine-tuned language model has to beat these to justify its cost: the majority class
(the floor) and TF-IDF n-grams with logistic regression (the classic strong baseline:
about 84.5% on the IMDB test set from 1,000 training reviews on this stack).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from llm_finetuning.pipelines.evaluation.params import TfidfLogRegParams
from llm_finetuning.predictions import predictions_frame

REVIEW_COLUMNS = ("row_id", "text", "label")


def check_reviews(reviews: pd.DataFrame, label_names: Sequence[str], name: str) -> None:
    """Raise ``ValueError`` naming ``name``, the column and rows unless ``reviews`` has
    the contract's ``row_id, text, label`` columns with known labels and text."""
    missing = [c for c in REVIEW_COLUMNS if c not in reviews.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {missing}; it has {list(reviews.columns)}"
        )
    if reviews.empty:
        raise ValueError(f"{name} has no rows")
    if reviews["row_id"].duplicated().any():
        repeated = reviews.loc[reviews["row_id"].duplicated(), "row_id"].unique()[:5]
        raise ValueError(f"{name}: row_id must be unique; repeated: {list(repeated)}")
    no_text = reviews["text"].isna() | (reviews["text"].astype(str).str.strip() == "")
    if no_text.any():
        raise ValueError(
            f"{name}: {int(no_text.sum())} row(s) have no text "
            f"(row_id {list(reviews.loc[no_text, 'row_id'][:5])})"
        )
    labels = pd.to_numeric(reviews["label"], errors="coerce")
    unknown = labels.isna() | ~labels.isin(range(len(label_names)))
    if unknown.any():
        raise ValueError(
            f"{name}: {int(unknown.sum())} row(s) have a label outside "
            f"0..{len(label_names) - 1} ({list(label_names)}): row_id "
            f"{list(reviews.loc[unknown, 'row_id'][:5])}, labels "
            f"{list(reviews.loc[unknown, 'label'][:5])}"
        )


def majority_class_classifier() -> DummyClassifier:
    """Always predicts the most frequent training class; probabilities are the class
    priors (so its ROC-AUC is 0.5 and its log-loss the entropy of the priors)."""
    return DummyClassifier(strategy="prior")


def tfidf_logreg_classifier(config: TfidfLogRegParams, seed: int) -> Pipeline:
    """TF-IDF word n-grams followed by logistic regression."""
    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    ngram_range=config.ngram_range,
                    min_df=config.min_df,
                    max_features=config.max_features,
                    sublinear_tf=config.sublinear_tf,
                    strip_accents="unicode",
                ),
            ),
            (
                "logreg",
                LogisticRegression(
                    C=config.C, max_iter=config.max_iter, random_state=seed
                ),
            ),
        ]
    )


def fit_and_predict(
    classifier: DummyClassifier | Pipeline,
    train_reviews: pd.DataFrame,
    test_reviews: pd.DataFrame,
    label_names: Sequence[str],
) -> pd.DataFrame:
    """Fit ``classifier`` on the training texts and predict the test set as a
    predictions frame (``row_id, label, predicted_label, prob_<name>...``)."""
    check_reviews(train_reviews, label_names, "train_reviews")
    check_reviews(test_reviews, label_names, "test_reviews")
    n_classes = len(label_names)
    classifier.fit(
        train_reviews["text"].astype(str).tolist(),
        train_reviews["label"].to_numpy(dtype=np.int64),
    )
    seen = classifier.classes_
    # A class absent from the training data gets no column from predict_proba.
    probabilities = np.zeros((len(test_reviews), n_classes))
    probabilities[:, seen] = classifier.predict_proba(
        test_reviews["text"].astype(str).tolist()
    )
    return predictions_frame(
        test_reviews["row_id"].to_numpy(),
        test_reviews["label"].to_numpy(dtype=np.int64),
        label_names,
        probabilities=probabilities,
    )
