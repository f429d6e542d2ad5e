"""The engine: `ablate run` executes a grid as Ray Tune trials (one per variant).

commands.py orchestrates (validate, lock, resume, train, prune, summarize); driver.py owns
Ray and Tune; trainable.py is the trial; progress.py prints progress; lock.py and resume.py
keep one study directory consistent across runs. Ray is imported only when a study runs.
"""
