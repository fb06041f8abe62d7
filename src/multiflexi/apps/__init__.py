"""Applications: definition files (``appjson``, ``normalize``) and the database (``service``).

Nothing is imported here, so that ``import multiflexi.apps.appjson`` stays cheap.
"""
