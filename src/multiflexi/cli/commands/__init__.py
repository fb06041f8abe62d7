"""One module per noun; each registers its commands with ``@command`` on import.

:data:`INDEX` names the module of every command, so that the CLI imports only the module of
the command it runs, and ``--help`` none of them: importing them all takes longer than a
whole ``job:list``. tests/cli/test_fast_path.py checks the index against what the modules
register, and prints it anew when a command was added or changed.
"""

#: name -> (module in this package, aliases, one-line help for ``--help``; None: hidden)
INDEX: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "action:list": (
        "actions",
        ("actions:list", "action:ls"),
        "List the available actions with their options.",
    ),
    "application:create": (
        "applications",
        (),
        "Create an application from options (--name and --executable are...",
    ),
    "application:delete": (
        "applications",
        (),
        "Delete an application; refused while run templates or jobs use it.",
    ),
    "application:export-json": (
        "applications",
        (),
        "Write an application's definition file; importing it gives the same...",
    ),
    "application:get": (
        "applications",
        (),
        "Show an application with its environment, artifacts and exit codes.",
    ),
    "application:import-json": (
        "applications",
        (),
        "Create or update an application from a *.multiflexi.app.json file.",
    ),
    "application:list": ("applications", (), "List applications, ordered by id."),
    "application:update": (
        "applications",
        (),
        "Change fields of an application selected by id or --uuid.",
    ),
    "application:validate-json": (
        "applications",
        (),
        "Check a definition file against the schema; exit 1 when it is invalid.",
    ),
    "artifact:get": (
        "artifacts",
        (),
        "Write an artifact's bytes to --output, or to stdout when it is not...",
    ),
    "artifact:list": ("artifacts", ("artifact:ls",), "List the artifacts of a job."),
    "artifact:save": (
        "artifacts",
        (),
        "Save an artifact to a file, byte-exact (upstream spelling of...",
    ),
    "artifact:show": ("artifacts", (), "Show an artifact's metadata."),
    "auditlog:list": (
        "users",
        ("audit:list",),
        "List audit log entries, newest first: who changed what, when,...",
    ),
    "company-app:assign": (
        "company_apps",
        (),
        "Assign an application to a company and create its default run...",
    ),
    "company-app:list": (
        "company_apps",
        (),
        "List assignments of applications to companies, with their run...",
    ),
    "company-app:unassign": (
        "company_apps",
        (),
        "Unassign an application; its run templates for the company are...",
    ),
    "company:create": ("companies", (), "Create a company."),
    "company:env:list": (
        "companies",
        (),
        "List environment variables of a company (secret-looking values...",
    ),
    "company:env:set": ("companies", (), "Set environment variables of a company."),
    "company:env:unset": ("companies", (), "Remove environment variables of a company."),
    "company:get": (
        "companies",
        ("company:show",),
        "Show one company, found by id, slug, name or IC.",
    ),
    "company:list": ("companies", (), "List companies."),
    "company:remove": (
        "companies",
        ("company:delete",),
        "Remove a company with its environment, assignments and credentials.",
    ),
    "company:update": ("companies", (), "Change fields of a company."),
    "credential-type:create": (
        "credentials",
        ("credential-prototype:create", "credtype:create", "crprototype:create"),
        "Create a credential type; global unless --company is given.",
    ),
    "credential-type:delete": (
        "credentials",
        ("credential-prototype:delete", "credtype:delete", "crprototype:delete"),
        "Delete a credential type (refused while credentials use it).",
    ),
    "credential-type:get": (
        "credentials",
        ("credential-prototype:get", "credtype:get", "crprototype:get"),
        "Show a credential type and its fields, by id, --uuid or --code.",
    ),
    "credential-type:import-json": (
        "credentials",
        ("credential-prototype:import-json", "credtype:import-json", "crprototype:import-json"),
        "Create or update a credential type from JSON (matched by uuid, then...",
    ),
    "credential-type:list": (
        "credentials",
        ("credential-prototype:list", "credtype:list", "crprototype:list"),
        "List credential types (global ones and, with --company, that...",
    ),
    "credential-type:validate-json": (
        "credentials",
        (
            "credential-prototype:validate-json",
            "credtype:validate-json",
            "crprototype:validate-json",
        ),
        "Check a credential type or prototype JSON file without importing it.",
    ),
    "credential:create": (
        "credentials",
        (),
        "Create a credential of a type for a company; secret fields are...",
    ),
    "credential:get": (
        "credentials",
        (),
        "Show a credential; secret values are redacted unless --reveal.",
    ),
    "credential:list": (
        "credentials",
        (),
        "List credentials (values of secret fields are redacted).",
    ),
    "credential:remove": (
        "credentials",
        ("credential:delete",),
        "Delete a credential and unbind it from run templates.",
    ),
    "credential:update": (
        "credentials",
        (),
        "Rename a credential or change its values (a blank secret keeps the...",
    ),
    "db:backup": (
        "backup",
        (),
        "Copy the SQLite database while daemons run (a new file, mode 0600).",
    ),
    "db:downgrade": ("db", (), "Undo the newest migrations down to REV, before installing the..."),
    "db:migrate": ("db", ("migrate",), "Create or upgrade the database schema to this version."),
    "db:status": ("db", (), "Show the database, its schema revision, and whether it needs..."),
    "executor:list": (
        "executors",
        ("executors:list",),
        "List the executors, whether each is usable here (and why not), and...",
    ),
    "global:env:list": (
        "global_env",
        (),
        "List the global job environment (secret-looking values redacted).",
    ),
    "global:env:set": ("global_env", (), "Set variables every job gets: a proxy, a CA bundle..."),
    "global:env:unset": ("global_env", (), "Remove variables from the global job environment."),
    "housekeeping": (
        "housekeeping",
        ("housekeeping:run",),
        "Run all housekeeping once: orphan repair, then the retention policy.",
    ),
    "job:cancel": (
        "jobs",
        ("job:stop",),
        "Cancel a job: a waiting one now; a running one (on any host) is...",
    ),
    "job:create": ("jobs", (), "Create a job of a run template and queue it (status scheduled)."),
    "job:delete": (
        "jobs",
        ("job:remove",),
        "Delete a job with its output and artifacts; a running one only with...",
    ),
    "job:env-file": (
        "scripts",
        ("job2env", "job:env"),
        "Print the job's environment as a file: for bash by default, or for...",
    ),
    "job:list": (
        "jobs",
        ("job:ls",),
        "List jobs, newest first: status, template, company, when (and how...",
    ),
    "job:logs": (
        "jobs",
        ("job:output",),
        "Print a job's output, byte-exact; with --follow, as it arrives.",
    ),
    "job:run": (
        "jobs",
        ("job:execute",),
        "Run a scheduled job now in the foreground; exit with the job's exit...",
    ),
    "job:script": (
        "scripts",
        ("job2script",),
        "Print a bash script that runs the job again as it ran: in a...",
    ),
    "job:show": (
        "jobs",
        ("job:get",),
        "Show a job: status, timings, exit code and meaning, metrics,...",
    ),
    "metrics": (
        "metrics",
        ("metrics:show",),
        "Print Prometheus metrics (text exposition; -f json for a list of...",
    ),
    "prune": (
        "housekeeping",
        ("job:prune",),
        "Apply the retention policy: delete old jobs, prune old artifacts.",
    ),
    "queue:clear": (
        "queue",
        ("queue:truncate",),
        "Cancel waiting jobs (status cancelled, with a reason); records are...",
    ),
    "queue:fix": (
        "housekeeping",
        ("queue:repair",),
        "Repair lost jobs, orphan queue rows, unqueued jobs and leftover job...",
    ),
    "queue:list": (
        "queue",
        ("queue:ls",),
        "Waiting jobs in the order they run: not-before, template, app,...",
    ),
    "queue:process": (
        "queue",
        ("queue:run",),
        "Run the jobs due now in the foreground, then exit (the daemon's...",
    ),
    "queue:status": (
        "queue",
        ("queue:overview",),
        "Counts by state, jobs due now, the oldest due job, running jobs and...",
    ),
    "run-template:action:list": (
        "actions",
        ("runtemplate:action:list",),
        "List the actions of a run template (secret options redacted).",
    ),
    "run-template:action:set": (
        "actions",
        ("runtemplate:action:set",),
        "Attach an action to a run template (or change its options; KEY=...",
    ),
    "run-template:action:unset": (
        "actions",
        ("runtemplate:action:unset",),
        "Detach an action from a run template.",
    ),
    "run-template:assign-credential": (
        "credentials",
        (),
        "Bind a credential to a run template (replaces one of the same type).",
    ),
    "run-template:create": ("runtemplates", (), "Create a run template."),
    "run-template:delete": ("runtemplates", (), "Delete a run template."),
    "run-template:get": (
        "runtemplates",
        ("runtemplate:show",),
        "Show a run template: settings, every configuration key of its...",
    ),
    "run-template:list": (
        "runtemplates",
        ("runtemplate:list",),
        "List run templates with their next and last run (like systemctl...",
    ),
    "run-template:list-credentials": (
        "credentials",
        (),
        "List the credentials bound to a run template.",
    ),
    "run-template:schedule": (
        "jobs",
        ("runtemplate:schedule",),
        "Create a job of a run template and queue it.",
    ),
    "run-template:unassign-credential": (
        "credentials",
        (),
        "Remove a credential from a run template.",
    ),
    "run-template:update": ("runtemplates", (), "Change a run template."),
    "status": (
        "status",
        (),
        "Version, database, counts, daemons alive (from their heartbeats),...",
    ),
    "storage:usage": (
        "housekeeping",
        ("storage:du",),
        "Bytes of artifacts and output per company, application, template...",
    ),
    "token:generate": (
        "users",
        ("token:create",),
        "Make an API token for a user; it is shown once and stored only as a...",
    ),
    "token:list": (
        "users",
        (),
        "List tokens (prefix, owner, expiry, last use, state); never the...",
    ),
    "token:revoke": ("users", ("token:delete",), "Revoke a token: it stops working at once."),
    "user-company:assign": (
        "users",
        (),
        "Give a user a role in a company (viewer: read only; operator: run...",
    ),
    "user-company:list": ("users", (), "List company assignments, of one user or one company."),
    "user-company:unassign": ("users", (), "Remove a user's role in a company."),
    "user-role:set": ("users", (), "Set the global roles of a user (admin: everything)."),
    "user:create": ("users", (), "Create a user; the password is asked for, or read with..."),
    "user:delete": (
        "users",
        ("user:remove",),
        "Delete a user with its tokens, roles and company assignments.",
    ),
    "user:get": ("users", (), "Show a user with its roles and company assignments."),
    "user:list": ("users", (), "List users (never their password hashes)."),
    "user:update": (
        "users",
        (),
        "Change fields of a user (select it with --id, --login or --email).",
    ),
}
