"""Maths the training methods share: HSIC estimators, weight and activation penalties, and the
salient/non-salient subspace split. Used by methods/ only; nothing in the engine depends on it."""
