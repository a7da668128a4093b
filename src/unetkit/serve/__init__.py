"""The web studio: look at a prediction, fix it, train again (`unetkit serve`).

app.py builds the FastAPI app over a Studio (state.py): the data set being annotated
(dataset.py), the models and their cached predictions (models.py), background jobs
(jobs.py, training.py); security.py holds the token, upload and path rules. The page
(static/) talks to the HTTP API that API.md documents.
"""
