"""Other job queues measured beside ifcflow in the same run: Celery (prefork and threads pools) and SAQ.

Each peer runs the job ifcflow's worker runs: one POST of the same body to the same stand-in service.
The worker-side code is in ``celery_app`` and ``saq_app`` (imported by the peers' own worker commands);
the bench side (start, enqueue, wait) in ``drivers``.
"""
