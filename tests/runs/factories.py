"""Runs are built through the services, so every factory-made run has its event stream."""

import factory

from runs import services
from runs.models import Project, Run


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class RunFactory(factory.Factory):
    class Meta:
        model = Run

    project = factory.LazyFunction(lambda: Project.objects.get(slug="default"))
    kind = "agent.session"
    name = factory.Sequence(lambda n: f"run {n}")
    input = factory.LazyFunction(dict)

    @classmethod
    def _create(cls, model_class, **kwargs):
        state = kwargs.pop("state", "queued")
        run, _ = services.run_enqueue(**kwargs)
        if state in ("running", "succeeded", "failed"):
            services.run_start(run_id=run.id, worker_id="w-1")
        if state == "succeeded":
            services.run_succeed(run_id=run.id)
        elif state == "failed":
            services.run_fail(run_id=run.id, error="boom")
        elif state == "canceled":
            services.run_cancel(run_id=run.id)
        run.refresh_from_db()
        return run
