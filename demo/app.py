"""Demo backend for syncgate: a small FastAPI app with an in-memory store.

It is deliberately an ordinary REST API that knows nothing about WebSockets or events. Put syncgate
in front of it and every successful POST/PUT/PATCH/DELETE becomes a realtime event. The one
syncgate-aware line is the `X-Sync-Event` header on `POST /api/notifications`, which shows how a
backend can send an event of its own without any client library (syncgate strips the header).

Run it alone:  uvicorn app:app --app-dir demo --port 8000
Every endpoint is `async def`, so all of them run on the event loop one at a time and the plain
dicts below need no lock. Restarting the process forgets everything.
"""

from __future__ import annotations

import json
from itertools import count
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

# The page is a Vite build of demo/web (React + @syncgate/client); scripts/demo.sh builds it.
WEB_DIST = Path(__file__).parent / "web" / "dist"

# Demo credentials: `Authorization: Bearer alice-token` or cookie `session=alice-token`.
USERS_BY_TOKEN: dict[str, dict[str, str]] = {
    "alice-token": {"id": "7", "name": "Alice"},
    "bob-token": {"id": "8", "name": "Bob"},
}

app = FastAPI(title="syncgate demo API")


class Store:
    """Everything the API knows, in memory. Ids are integers counting up from 1."""

    def __init__(self) -> None:
        self.projects: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.project_ids = count(1)
        self.task_ids = count(1)
        self.notification_ids = count(1)


store = Store()


class ProjectIn(BaseModel):
    name: str
    description: str | None = None


class ProjectPatch(BaseModel):
    name: str | None = None
    description: str | None = None


class TaskIn(BaseModel):
    title: str
    done: bool = False


class TaskPatch(BaseModel):
    title: str | None = None
    done: bool | None = None


class NotificationIn(BaseModel):
    user_id: str | int
    title: str


# --- who is calling -------------------------------------------------------------------------------


def current_user(request: Request) -> dict[str, str] | None:
    """The caller from a bearer token or the `session` cookie; None when anonymous."""
    auth = request.headers.get("authorization", "")
    token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else request.cookies.get("session")
    return USERS_BY_TOKEN.get(token or "")


def require_user(request: Request) -> dict[str, str]:
    user = current_user(request)
    if user is None:
        raise HTTPException(status_code=401, detail="not authenticated")
    return user


def get_project(project_id: int) -> dict[str, Any]:
    project = store.projects.get(project_id)
    if project is None:
        raise HTTPException(status_code=404, detail=f"project {project_id} not found")
    return project


def get_task(project_id: int, task_id: int) -> dict[str, Any]:
    get_project(project_id)
    task = store.tasks.get(task_id)
    if task is None or task["project_id"] != project_id:
        raise HTTPException(status_code=404, detail=f"task {task_id} not found")
    return task


# --- endpoints ------------------------------------------------------------------------------------


@app.get("/api/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/auth/me")
async def me(request: Request) -> dict[str, str]:
    return require_user(request)


@app.get("/api/projects")
async def list_projects() -> list[dict[str, Any]]:
    return list(store.projects.values())


@app.post("/api/projects", status_code=201)
async def create_project(body: ProjectIn, request: Request) -> dict[str, Any]:
    user = current_user(request)
    project = {
        "id": next(store.project_ids),
        "name": body.name,
        "description": body.description,
        "owner_id": user["id"] if user else None,
    }
    store.projects[project["id"]] = project
    return project


@app.get("/api/projects/{project_id}")
async def read_project(project_id: int) -> dict[str, Any]:
    return get_project(project_id)


@app.put("/api/projects/{project_id}")
async def replace_project(project_id: int, body: ProjectIn) -> dict[str, Any]:
    project = get_project(project_id)
    project.update(name=body.name, description=body.description)
    return project


@app.patch("/api/projects/{project_id}")
async def update_project(project_id: int, body: ProjectPatch) -> dict[str, Any]:
    project = get_project(project_id)
    project.update(body.model_dump(exclude_unset=True))
    return project


@app.delete("/api/projects/{project_id}")
async def delete_project(project_id: int) -> dict[str, Any]:
    project = get_project(project_id)
    del store.projects[project_id]
    for task_id in [t["id"] for t in store.tasks.values() if t["project_id"] == project_id]:
        del store.tasks[task_id]
    return project


@app.get("/api/projects/{project_id}/tasks")
async def list_tasks(project_id: int) -> list[dict[str, Any]]:
    get_project(project_id)
    return [t for t in store.tasks.values() if t["project_id"] == project_id]


@app.post("/api/projects/{project_id}/tasks", status_code=201)
async def create_task(project_id: int, body: TaskIn) -> dict[str, Any]:
    get_project(project_id)
    task = {"id": next(store.task_ids), "project_id": project_id, "title": body.title, "done": body.done}
    store.tasks[task["id"]] = task
    return task


@app.patch("/api/projects/{project_id}/tasks/{task_id}")
async def update_task(project_id: int, task_id: int, body: TaskPatch) -> dict[str, Any]:
    task = get_task(project_id, task_id)
    task.update(body.model_dump(exclude_unset=True))
    return task


@app.delete("/api/projects/{project_id}/tasks/{task_id}")
async def delete_task(project_id: int, task_id: int) -> dict[str, Any]:
    task = get_task(project_id, task_id)
    del store.tasks[task_id]
    return task


@app.get("/api/dashboard")
async def dashboard() -> dict[str, int]:
    open_tasks = sum(1 for t in store.tasks.values() if not t["done"])
    return {"projects": len(store.projects), "tasks": len(store.tasks), "open_tasks": open_tasks}


@app.get("/api/notifications")
async def list_notifications(request: Request) -> list[dict[str, Any]]:
    user = require_user(request)
    return [n for n in store.notifications if n["user_id"] == user["id"]]


@app.post("/api/notifications", status_code=201)
async def create_notification(body: NotificationIn, response: Response) -> dict[str, Any]:
    user_id = str(body.user_id)
    notification = {"id": next(store.notification_ids), "user_id": user_id, "title": body.title, "read": False}
    store.notifications.append(notification)
    # syncgate strips this header and publishes the event to that user's private channel.
    # json.dumps escapes non-ASCII, so the value is always a valid header.
    event = {
        "channel": f"user:{user_id}",
        "type": "notification_created",
        "data": {"title": body.title},
        "invalidate": [["notifications"]],
    }
    response.headers["X-Sync-Event"] = json.dumps(event, separators=(",", ":"))
    return notification


# --- the demo page --------------------------------------------------------------------------------


NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>syncgate demo</title>
<p>The demo page is not built yet. Run <code>scripts/demo.sh</code>, or
<code>(cd clients/js && npm ci && npm run build) && (cd demo/web && npm ci && npm run build)</code>.</p>"""


@app.get("/", include_in_schema=False, response_model=None)
async def index() -> FileResponse | HTMLResponse:
    page = WEB_DIST / "index.html"
    if not page.is_file():
        return HTMLResponse(NOT_BUILT, status_code=503)
    return FileResponse(page)


# check_dir=False: the API works (and its tests run) before the page has been built.
app.mount("/assets", StaticFiles(directory=WEB_DIST / "assets", check_dir=False), name="assets")
