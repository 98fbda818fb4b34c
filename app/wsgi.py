"""The WSGI entry point: ``gunicorn -c app/gunicorn_conf.py app.wsgi:app``.

The app is built at import, in each Gunicorn worker (preload_app is off), from the environment.
"""

from app import create_app

app = create_app()
