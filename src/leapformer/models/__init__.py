"""Models assembled from :mod:`leapformer.nn`: sequence classifiers (LRA)."""

from leapformer.models.classifier import ClassifierConfig, DualEncoderClassifier, SequenceClassifier

__all__ = ["ClassifierConfig", "DualEncoderClassifier", "SequenceClassifier"]
