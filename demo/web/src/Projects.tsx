// Projects: a TanStack query kept fresh by the sidecar's events, and three mutations.
import { useMutationWithInvalidation } from "@syncgate/client/react";
import { useQuery } from "@tanstack/react-query";
import { type FormEvent, memo, useState } from "react";
import { type Project, useApi } from "./api";

export function Projects(props: { openProject: number | null; onOpen: (id: number) => void }) {
  const api = useApi();
  const projects = useQuery({ queryKey: ["projects"], queryFn: api.listProjects });
  const [name, setName] = useState("");

  const create = useMutationWithInvalidation({
    mutationFn: api.createProject,
    invalidateKeys: ["projects"],
    onSuccess: () => setName(""),
  });

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const trimmed = name.trim();
    if (trimmed) create.mutate(trimmed);
  };

  return (
    <section>
      <h2>Projects</h2>
      <form onSubmit={submit}>
        <input
          data-testid="new-project-name"
          placeholder="New project name"
          value={name}
          onChange={(e) => setName(e.target.value)}
        />
        <button data-testid="create-project" type="submit" disabled={create.isPending}>
          Create
        </button>
      </form>
      {projects.isLoading && <p className="muted">Loading…</p>}
      {projects.error && <p className="muted">Could not load: {String(projects.error)}</p>}
      <ul data-testid="projects">
        {projects.data?.length === 0 && <li className="muted">No projects yet.</li>}
        {projects.data?.map((project) => (
          <Row
            key={project.id}
            project={project}
            selected={project.id === props.openProject}
            onOpen={props.onOpen}
          />
        ))}
      </ul>
    </section>
  );
}

function ProjectRow(props: { project: Project; selected: boolean; onOpen: (id: number) => void }) {
  const { project } = props;
  const api = useApi();
  const [editing, setEditing] = useState<string | null>(null);
  const rename = useMutationWithInvalidation({
    mutationFn: (name: string) => api.renameProject(project.id, name),
    invalidateKeys: ["projects", ["project", String(project.id)]],
    onSuccess: () => setEditing(null),
  });
  const remove = useMutationWithInvalidation({
    mutationFn: () => api.deleteProject(project.id),
    invalidateKeys: ["projects", ["project", String(project.id)]],
  });

  return (
    <li
      data-testid="project"
      data-id={project.id}
      data-name={project.name}
      className={props.selected ? "selected" : undefined}
    >
      <span className="id">#{project.id}</span>
      {editing === null ? (
        <span className="name">{project.name}</span>
      ) : (
        <input
          className="name"
          data-testid="rename-input"
          value={editing}
          autoFocus
          onChange={(e) => setEditing(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && editing.trim()) rename.mutate(editing.trim());
            if (e.key === "Escape") setEditing(null);
          }}
        />
      )}
      {editing === null ? (
        <button data-testid="rename" onClick={() => setEditing(project.name)}>
          Rename
        </button>
      ) : (
        <button data-testid="save" onClick={() => editing.trim() && rename.mutate(editing.trim())}>
          Save
        </button>
      )}
      <button data-testid="delete" onClick={() => remove.mutate()} disabled={remove.isPending}>
        Delete
      </button>
      <button data-testid="open" onClick={() => props.onOpen(project.id)}>
        Open
      </button>
    </li>
  );
}

// Rows re-render only when their own project changes (TanStack keeps unchanged rows' objects).
const Row = memo(ProjectRow);
