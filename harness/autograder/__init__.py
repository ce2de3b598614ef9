"""Everything that grades a notebook.

    loader      the ``export`` cells of a session notebook as a module (``load_session``, ``upstream``)
    notebook    reading jupytext percent files: cells, tags, export source
    stubs       ``python -m harness sync`` / ``restore``: learner notebooks generated from solutions/
    exercises   the exercise manifest of each session (``harness/session_NN/__init__.py``)
    checks      assertions that fail like a tutor (expected / got / hint)
    modules     ``nn.Module`` exercises compared with the reference, weights shared through the state_dict
    grading     how a test ended, in the autograder's words
    plugin      the pytest plugin (``--impl``, the ``nb`` fixture, time limits, the per-exercise summary)
    inline      ``Checker``: the same tests, run from inside the notebook
    progress    ``python -m harness progress``
    execute     run a notebook top to bottom in a Jupyter kernel
    lab         JupyterLab settings for the workbook
"""
