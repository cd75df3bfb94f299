"""The runs app's URLs: the API (under /api/v1/, mounted by tracefoundry/urls.py) and the pages
(in the shared `pages:` namespace). WebSocket routes are in routing.py."""

from django.urls import path, re_path

from runs import pages
from runs.api import stream, views

RUN = r"runs/(?P<run_id>run_[0-9A-Za-z]{1,36})"
STEP = r"steps/(?P<step_id>step_[0-9A-Za-z]{1,36})"

api_urlpatterns = [
    re_path(r"^runs/?$", views.RunListCreateView.as_view(), name="run-list"),
    re_path(r"^workers/?$", views.WorkerListView.as_view(), name="worker-list"),
    re_path(r"^runs/claim/?$", views.RunClaimView.as_view(), name="run-claim"),
    re_path(rf"^{RUN}/?$", views.RunDetailView.as_view(), name="run-detail"),
    re_path(rf"^{RUN}/start/?$", views.RunStartView.as_view(), name="run-start"),
    re_path(rf"^{RUN}/succeed/?$", views.RunSucceedView.as_view(), name="run-succeed"),
    re_path(rf"^{RUN}/complete/?$", views.RunSucceedView.as_view(), name="run-complete"),
    re_path(rf"^{RUN}/fail/?$", views.RunFailView.as_view(), name="run-fail"),
    re_path(rf"^{RUN}/cancel/?$", views.RunCancelView.as_view(), name="run-cancel"),
    re_path(rf"^{RUN}/heartbeat/?$", views.RunHeartbeatView.as_view(), name="run-heartbeat"),
    re_path(rf"^{RUN}/steps/?$", views.StepListCreateView.as_view(), name="run-steps"),
    *[
        re_path(rf"^{RUN}/{STEP}/{action}/?$", views.StepActionView.as_view(action=action),
                name=f"step-{action}")
        for action in ("start", "succeed", "fail", "skip")
    ],
    re_path(rf"^{RUN}/events/?$", views.EventListCreateView.as_view(), name="run-events"),
    re_path(rf"^{RUN}/events/stream/?$", stream.EventStreamView.as_view(),
            name="run-events-stream"),
    re_path(r"^projects/(?P<slug>[-a-zA-Z0-9_]{1,100})/events/stream/?$",
            stream.ProjectEventStreamView.as_view(), name="project-events-stream"),
]

page_urlpatterns = [
    path("runs/", pages.runs_list, name="runs"),
    path("runs/<str:run_id>/", pages.run_detail, name="run"),
    path("projects/", pages.projects, name="projects"),
    path("projects/<slug:slug>/stream/", pages.project_stream, name="project-stream"),
]
