"""``POST /signups``: a signup row, and its welcome email once the row is committed."""

import json

from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from examples.recipes.django_site.models import Signup
from examples.recipes.django_site.tasks import tasks


class Refused(Exception):
    pass


@require_POST
def signup(request: HttpRequest) -> JsonResponse:
    email = str(json.loads(request.body or b"{}").get("email", ""))
    task_id = f"welcome-{email}"
    try:
        with transaction.atomic():
            Signup.objects.create(email=email)
            # Django's ORM has its own connection, which sokka cannot share: the
            # task is enqueued once Django has committed, and never on a rollback.
            transaction.on_commit(
                lambda: tasks.enqueue("welcome-emails", {"to": email}, task_id=task_id)
            )
            if "@" not in email or email.endswith("@example.invalid"):
                raise Refused(f"cannot sign up {email!r}")  # rolls back: no on_commit
    except Refused as error:
        return JsonResponse({"error": str(error)}, status=422)
    except IntegrityError:
        return JsonResponse({"error": f"{email!r} has signed up already"}, status=409)
    return JsonResponse({"email": email, "task_id": task_id}, status=201)
