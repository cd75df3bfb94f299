"""Pages for runs: runs list, the live run page, projects and the project stream."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import path


@login_required
def runs_list(request):
    return render(request, "pages/runs_list.html", {"nav": "runs"})


@login_required
def run_detail(request, run_id):
    return render(request, "pages/run_detail.html", {"nav": "runs", "run_id": run_id})


@login_required
def projects(request):
    return render(request, "pages/projects.html", {"nav": "projects"})


@login_required
def project_stream(request, slug):
    return render(request, "pages/project_stream.html", {"nav": "projects", "slug": slug})


urlpatterns = [
    path("runs/", runs_list, name="runs"),
    path("runs/<str:run_id>/", run_detail, name="run"),
    path("projects/", projects, name="projects"),
    path("projects/<slug:slug>/stream/", project_stream, name="project-stream"),
]
