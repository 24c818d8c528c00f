"""The model server: a BentoML service that scores transactions with the ``champion`` model.

``service.py`` is what ``bentoml serve`` loads; everything it runs is built per worker from
:class:`~services.serving.settings.ServingSettings`, and each part is a small class that a unit
test can build with fakes: the online feature reader, the model slots and their watcher, the
shadow scorer, the prediction log and the HTTP app.
"""
