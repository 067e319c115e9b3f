-- The capture schema of kinspect's schema version 1, for the test that such files
-- are still read (and never appended to).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE flows (
    id                        INTEGER PRIMARY KEY,
    kind                      TEXT    NOT NULL,
    started_at                TEXT    NOT NULL,
    started_at_ns             INTEGER NOT NULL,
    client_addr               TEXT    NOT NULL,
    scheme                    TEXT    NOT NULL,
    host                      TEXT    NOT NULL,
    port                      INTEGER NOT NULL,
    method                    TEXT    NOT NULL,
    url                       TEXT    NOT NULL,
    request_http_version      TEXT    NOT NULL,
    request_body_size         INTEGER NOT NULL,
    request_body_truncated    INTEGER NOT NULL,
    request_body_incomplete   INTEGER NOT NULL,
    status                    INTEGER,
    response_http_version     TEXT,
    response_from_proxy       INTEGER,
    response_body_size        INTEGER,
    response_body_truncated   INTEGER,
    response_body_incomplete  INTEGER,
    response_content_type     TEXT,
    time_blocked_ms           REAL,
    time_dns_ms               REAL,
    time_connect_ms           REAL,
    time_ssl_ms               REAL,
    time_send_ms              REAL    NOT NULL,
    time_wait_ms              REAL    NOT NULL,
    time_receive_ms           REAL    NOT NULL,
    duration_ms               REAL    NOT NULL,
    server_ip                 TEXT,
    client_tls                INTEGER NOT NULL,
    client_tls_sni            TEXT,
    client_tls_alpn           TEXT,
    client_tls_version        TEXT,
    server_tls                INTEGER NOT NULL,
    server_tls_sni            TEXT,
    server_tls_alpn           TEXT,
    server_tls_version        TEXT,
    error_kind                TEXT,
    error_message             TEXT,
    kinvey_request_id         TEXT,
    kinvey_error              TEXT,
    kinvey_class              TEXT,
    kinvey_known              INTEGER,
    kinvey_anomalies          TEXT,
    kinvey_warnings           TEXT
);

CREATE TABLE headers (
    flow_id   INTEGER NOT NULL REFERENCES flows(id),
    side      TEXT    NOT NULL CHECK (side IN ('request', 'response')),
    position  INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    value     BLOB    NOT NULL,  -- TEXT when the value is UTF-8, else a BLOB
    PRIMARY KEY (flow_id, side, position)
) WITHOUT ROWID;

CREATE TABLE bodies (
    flow_id  INTEGER NOT NULL REFERENCES flows(id),
    side     TEXT    NOT NULL CHECK (side IN ('request', 'response')),
    data     BLOB    NOT NULL,
    PRIMARY KEY (flow_id, side)
);

-- Partial: flows without a request id (most non-Kinvey traffic) cost no index entry.
CREATE INDEX flows_kinvey_request_id ON flows(kinvey_request_id)
    WHERE kinvey_request_id IS NOT NULL;
