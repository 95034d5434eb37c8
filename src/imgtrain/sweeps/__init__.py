"""Sweeps: many training runs over a search space on Optuna, pruned early, resumable, on one machine or many.

settings.py declares a sweep's options; space.py reads and checks its search space; study.py opens the Optuna
study and finds the trials a killed worker left; trial.py runs one trial as an ordinary training run; run.py
drives the workers; report.py writes the table, the plots and the best model.
"""
