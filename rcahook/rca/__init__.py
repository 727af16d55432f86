"""Stages 2-3, root-cause analysis: the incident, retrieval, features, the conditional-logit
scorer, ranking (features or LLM), reasons, confidence, the investigation, its report and
the feedback store.
"""
