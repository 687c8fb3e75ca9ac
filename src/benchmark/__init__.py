"""Measure: news -> prompts -> backends -> results store -> statistics -> report."""
