-- The capture schema of kinspect's schema version 2, for the test that such files
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
    kinvey_warnings           TEXT,
    -- JSON arrays of [name, value] in received order; a value that is not UTF-8 is an
    -- array of its bytes. One column instead of a row per field: a row per field was
    -- a third of the recorder's time.
    request_headers           TEXT    NOT NULL,
    response_headers          TEXT
);

-- Every header as a row, for SQL (`SELECT ... FROM headers WHERE name = ...`).
CREATE VIEW headers (flow_id, side, position, name, value) AS
    SELECT flows.id, 'request', field.key, json_extract(field.value, '$[0]'),
           json_extract(field.value, '$[1]')
    FROM flows, json_each(flows.request_headers) AS field
    UNION ALL
    SELECT flows.id, 'response', field.key, json_extract(field.value, '$[0]'),
           json_extract(field.value, '$[1]')
    FROM flows, json_each(flows.response_headers) AS field;

CREATE TABLE bodies (
    flow_id  INTEGER NOT NULL REFERENCES flows(id),
    side     TEXT    NOT NULL CHECK (side IN ('request', 'response')),
    data     BLOB    NOT NULL,
    PRIMARY KEY (flow_id, side)
);

-- Partial: flows without a request id (most non-Kinvey traffic) cost no index entry.
CREATE INDEX flows_kinvey_request_id ON flows(kinvey_request_id)
    WHERE kinvey_request_id IS NOT NULL;
