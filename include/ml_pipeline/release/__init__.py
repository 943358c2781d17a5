"""Releasing a challenger on live evidence: what an experiment logs (records.py), the
true labels that come back (feedback.py), the tests (statistics.py) and the stated
pass / fail / inconclusive decision (decision.py). Plain Python: no Airflow, no server.
"""
