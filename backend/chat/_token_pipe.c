/* The token relay's native hot path (backend/chat/native_relay.py drives it).
 *
 * Once an openai tier has answered, every network read of the upstream reaches `Tap.on_body` from httptools'
 * parser, inside the socket's callback. While the tap pipes, it does here, in C, what the Python relay does in
 * ~20 Python frames per token (BENCHMARKS.md, "Streaming at 1,000 streams"): split the read into SSE events (the same rules as
 * tiers/sse_deltas.py: LF or CRLF line ends, `data:` lines of one event joined by LF, a blank line ends the event,
 * other fields ignored, `[DONE]` ends the stream), parse each event with orjson, take the choice's text, frame one
 * `token` event per read (byte for byte events.token_frame), append it to the resume log's write buffer when there
 * is one (encoded as chat/stream_log.py's flusher reads it), and write it, wrapped as uvicorn's chunked body, to the
 * visitor's transport.
 *
 * Everything that is not a token goes back to Python through `on_event(kind, a, b)`: the finish reason and
 * usage, a stream error, the end, and each reason to stop writing (the turn was cancelled, the visitor's socket
 * is full, tokens come dense enough to coalesce, the answer reached its length cap). At each of those the tap
 * holds itself: later reads go to `fallback` (the connection's own buffer) until Python releases it.
 *
 * Built with the platform's default flags for any CPU of the architecture (setup.py), never for "this CPU".
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

enum {
    EV_META = 1,      /* a: finish_reason (str | None), b: usage (dict | None) */
    EV_ERROR = 2,     /* a: message (str): the stream broke (not JSON, not an object, an error object) */
    EV_DONE = 3,      /* [DONE] */
    EV_CANCELLED = 4, /* the turn's control has a reason: nothing more is written */
    EV_FULL = 5,      /* a: frame (bytes), b: text: the visitor's socket is full; Python writes it when it drains */
    EV_DENSE = 6,     /* pieces come less than dense_gap apart (relay_core.is_dense): hold the upstream for one window */
    EV_LIMIT = 7,     /* the answer reached its length cap */
};

static PyObject *orjson_loads, *orjson_dumps, *json_decode_error, *empty_str;
static PyObject *s_write, *s_reason, *s_since, *s_disconnected, *s_write_paused, *s_choices, *s_delta,
    *s_content, *s_finish_reason, *s_usage, *s_error, *s_message;

#define COMPACT_EVERY 32
static const char TOKEN_HEAD[] = "\nevent: token\ndata: {\"text\":";
static const char TOKEN_TAIL[] = "}\n\n";

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int buf_add(Buf *b, const char *p, Py_ssize_t n) {
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *data = PyMem_Realloc(b->data, cap);
        if (data == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static void buf_free(Buf *b) {
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

typedef struct {
    PyObject_HEAD
    PyObject *fallback; /* callable(bytes): where bytes go while the tap does not pipe, or holds */
    int piping, held, done;
    /* the SSE decoder */
    Buf line;  /* an incomplete last line */
    Buf event; /* the data of the event being read */
    int has_data;
    Py_ssize_t max_event;
    /* the writer */
    PyObject *write; /* the visitor's transport.write, bound once; NULL once detached: frames go to the log only */
    PyObject *cycle, *flow, *control, *clock, *on_event;
    long long next_id;
    /* the resume log (stream_log.NativeLog): its shared write buffer (NULL: no log), this turn's event head, the
     * flusher's wake-up, the last event id kept, how often (s) an event (re)sets the key's expiry, and when one last did */
    PyObject *log_events, *log_head, *log_wake;
    long long log_limit;
    double log_refresh, log_refreshed;
    double dense_gap, last; /* dense_gap: relay_core.dense_gap(window), passed in */
    PyObject *texts; /* what was written, joined every COMPACT_EVERY appends */
    Py_ssize_t sent_chars, max_chars;
} Tap;

static void tap_drop_writer(Tap *self) {
    Py_CLEAR(self->write);
    Py_CLEAR(self->cycle);
    Py_CLEAR(self->flow);
    Py_CLEAR(self->control);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->log_events);
    Py_CLEAR(self->log_head);
    Py_CLEAR(self->log_wake);
    Py_CLEAR(self->on_event);
}

static int tap_traverse(Tap *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);
    Py_VISIT(self->write);
    Py_VISIT(self->cycle);
    Py_VISIT(self->flow);
    Py_VISIT(self->control);
    Py_VISIT(self->clock);
    Py_VISIT(self->log_events);
    Py_VISIT(self->log_head);
    Py_VISIT(self->log_wake);
    Py_VISIT(self->on_event);
    Py_VISIT(self->texts);
    return 0;
}

static int tap_clear(Tap *self) {
    Py_CLEAR(self->fallback);
    tap_drop_writer(self);
    Py_CLEAR(self->texts);
    return 0;
}

static void tap_dealloc(Tap *self) {
    PyObject_GC_UnTrack(self);
    tap_clear(self);
    buf_free(&self->line);
    buf_free(&self->event);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int tap_init(Tap *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fallback", NULL};
    PyObject *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Tap", kwlist, &fallback)) return -1;
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    Py_XSETREF(self->texts, PyList_New(0));
    return self->texts == NULL ? -1 : 0;
}

static PyObject *emit(Tap *self, int kind, PyObject *a, PyObject *b) {
    if (self->on_event == NULL) Py_RETURN_NONE;
    PyObject *k = PyLong_FromLong(kind);
    if (k == NULL) return NULL;
    PyObject *args[3] = {k, a ? a : Py_None, b ? b : Py_None};
    PyObject *on_event = Py_NewRef(self->on_event); /* the callback may stop (clear) the tap */
    PyObject *result = PyObject_Vectorcall(on_event, args, 3, NULL);
    Py_DECREF(on_event);
    Py_DECREF(k);
    return result;
}

static int emit_void(Tap *self, int kind, PyObject *a, PyObject *b) {
    PyObject *result = emit(self, kind, a, b);
    if (result == NULL) return -1;
    Py_DECREF(result);
    return 0;
}

static PyObject *join_texts(PyObject *texts) { return PyUnicode_Join(empty_str, texts); }

static int count_sent(Tap *self, PyObject *text) {
    if (PyList_Append(self->texts, text) < 0) return -1;
    self->sent_chars += PyUnicode_GET_LENGTH(text);
    if (PyList_GET_SIZE(self->texts) > COMPACT_EVERY) {
        PyObject *joined = join_texts(self->texts);
        if (joined == NULL) return -1;
        PyObject *texts = PyList_New(1);
        if (texts == NULL) {
            Py_DECREF(joined);
            return -1;
        }
        PyList_SET_ITEM(texts, 0, joined);
        Py_SETREF(self->texts, texts);
    }
    return 0;
}

/* After a write (at `now`, read just before it): stamp the watchdog's clock; hold for a window while pieces are
 * dense; stop at the cap. */
static int stamp(Tap *self, PyObject *now_obj, double now) {
    if (PyObject_SetAttr(self->control, s_since, now_obj) < 0) return -1;
    double previous = self->last;
    self->last = now;
    if (self->max_chars > 0 && self->sent_chars >= self->max_chars) {
        self->held = 1;
        return emit_void(self, EV_LIMIT, NULL, NULL);
    }
    if (now - previous < self->dense_gap) { /* relay_core.dense_gap(window): the rule is defined there */
        self->held = 1;
        return emit_void(self, EV_DENSE, NULL, NULL);
    }
    return 0;
}

static int attr_true(PyObject *obj, PyObject *name) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) return -1;
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* `value` (not negative) in decimal at `out`; returns its length. (snprintf's format parsing was ~1.5 % of the
 * service's CPU at 1,000 streams.) */
static int format_decimal(char *out, long long value) {
    char digits[24];
    int n = 0;
    unsigned long long v = value < 0 ? 0 : (unsigned long long)value;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++) out[i] = digits[n - 1 - i];
    return n;
}

/* `value` in lowercase hexadecimal at `out` (a chunk size line); returns its length. */
static int format_hex(char *out, unsigned long long value) {
    static const char HEX[] = "0123456789abcdef";
    char digits[20];
    int n = 0;
    do {
        digits[n++] = HEX[value & 15];
        value >>= 4;
    } while (value);
    for (int i = 0; i < n; i++) out[i] = digits[n - 1 - i];
    return n;
}

static void put_u32(char *out, unsigned long value) {
    out[0] = (char)(value >> 24);
    out[1] = (char)(value >> 16);
    out[2] = (char)(value >> 8);
    out[3] = (char)value;
}

/* Append the frame to the resume log's write buffer as stream_log.StreamLog.append does: the turn's head (the key's
 * length and the key), the event id, the flag, the frame's length, the frame. No Python runs per token here; the
 * flusher is woken when this event is the buffer's first. */
static int log_frame(Tap *self, long long event_id, const char *frame, Py_ssize_t frame_len, double now) {
    enum { PLAIN = 0, EXPIRE = 1 }; /* stream_log's flags (a token is never TERMINAL) */
    if (event_id > self->log_limit) return 0; /* bounded: a replay past this point finds the gap and says so */
    PyObject *events = self->log_events;
    Py_ssize_t head_len = PyBytes_GET_SIZE(self->log_head);
    Py_ssize_t start = PyByteArray_GET_SIZE(events);
    if (PyByteArray_Resize(events, start + head_len + 9 + frame_len) < 0) return -1;
    char *out = PyByteArray_AS_STRING(events) + start;
    memcpy(out, PyBytes_AS_STRING(self->log_head), head_len);
    out += head_len;
    int flag = PLAIN;
    if (now - self->log_refreshed > self->log_refresh) {
        flag = EXPIRE;
        self->log_refreshed = now;
    }
    put_u32(out, (unsigned long)event_id);
    out[4] = (char)flag;
    put_u32(out + 5, (unsigned long)frame_len);
    memcpy(out + 9, frame, frame_len);
    if (start > 0) return 0;
    PyObject *result = PyObject_CallNoArgs(self->log_wake);
    if (result == NULL) return -1;
    Py_DECREF(result);
    return 0;
}

/* One token frame for `text`, written (or handed to Python when the socket is full). */
static int write_text(Tap *self, PyObject *text) {
    if (!self->piping) return 0; /* an on_event callback stopped the tap */
    if (self->max_chars > 0 && self->sent_chars >= self->max_chars) { /* the cap was reached before */
        self->held = 1;
        return emit_void(self, EV_LIMIT, NULL, NULL);
    }
    if (self->max_chars > 0 && self->sent_chars + PyUnicode_GET_LENGTH(text) > self->max_chars) {
        /* the piece that passes the cap is cut there (the caller's reference stays the caller's) */
        PyObject *cut = PyUnicode_Substring(text, 0, self->max_chars - self->sent_chars);
        if (cut == NULL) return -1;
        int failed = write_text(self, cut);
        Py_DECREF(cut);
        return failed;
    }
    PyObject *reason = PyObject_GetAttr(self->control, s_reason);
    if (reason == NULL) return -1;
    int cancelled = reason != Py_None;
    Py_DECREF(reason);
    if (cancelled) { /* being cancelled: nothing more goes out */
        self->held = 1;
        return emit_void(self, EV_CANCELLED, NULL, NULL);
    }
    PyObject *now_obj = PyObject_CallNoArgs(self->clock);
    if (now_obj == NULL) return -1;
    double now = PyFloat_AsDouble(now_obj);
    if (now == -1.0 && PyErr_Occurred()) {
        Py_DECREF(now_obj);
        return -1;
    }
    PyObject *json = PyObject_CallOneArg(orjson_dumps, text);
    if (json == NULL) {
        Py_DECREF(now_obj);
        return -1;
    }
    char id[32] = "id: ";
    int id_len = 4 + format_decimal(id + 4, self->next_id);
    Py_ssize_t json_len = PyBytes_GET_SIZE(json);
    Py_ssize_t frame_len = id_len + (Py_ssize_t)(sizeof TOKEN_HEAD - 1) + json_len + (Py_ssize_t)(sizeof TOKEN_TAIL - 1);
    char head[24];
    int head_len = format_hex(head, (unsigned long long)frame_len);
    head[head_len++] = '\r';
    head[head_len++] = '\n';
    /* One allocation: the chunk header, the frame, the chunk's CRLF. The log gets the frame alone. */
    PyObject *wrapped = PyBytes_FromStringAndSize(NULL, head_len + frame_len + 2);
    if (wrapped == NULL) {
        Py_DECREF(json);
        Py_DECREF(now_obj);
        return -1;
    }
    char *out = PyBytes_AS_STRING(wrapped);
    memcpy(out, head, head_len);
    char *frame = out + head_len;
    char *p = frame;
    memcpy(p, id, id_len);
    p += id_len;
    memcpy(p, TOKEN_HEAD, sizeof TOKEN_HEAD - 1);
    p += sizeof TOKEN_HEAD - 1;
    memcpy(p, PyBytes_AS_STRING(json), json_len);
    p += json_len;
    memcpy(p, TOKEN_TAIL, sizeof TOKEN_TAIL - 1);
    p += sizeof TOKEN_TAIL - 1;
    memcpy(p, "\r\n", 2);
    Py_DECREF(json);
    long long event_id = self->next_id++;

    int written = 1; /* detached, or a visitor uvicorn knows is gone: its send would drop the frame too */
    int failed = -1;
    if (self->log_events != NULL && log_frame(self, event_id, frame, frame_len, now) < 0) goto end;
    if (self->write != NULL) {
        int gone = attr_true(self->cycle, s_disconnected);
        int full = gone ? 0 : attr_true(self->flow, s_write_paused);
        if (gone < 0 || full < 0) goto end;
        if (full) { /* uvicorn's send would wait for the socket to drain: Python does (the frame alone) */
            PyObject *frame_bytes = PyBytes_FromStringAndSize(frame, frame_len);
            Py_DECREF(wrapped);
            Py_DECREF(now_obj);
            if (frame_bytes == NULL) return -1;
            self->held = 1;
            failed = emit_void(self, EV_FULL, frame_bytes, text);
            Py_DECREF(frame_bytes);
            return failed;
        }
        if (!gone) {
            PyObject *result = PyObject_CallOneArg(self->write, wrapped);
            if (result == NULL) written = 0;
            Py_XDECREF(result);
        }
    }
    if (written && count_sent(self, text) == 0) failed = stamp(self, now_obj, now);
end:
    Py_DECREF(wrapped);
    Py_DECREF(now_obj);
    return failed;
}

/* One event's payload: [DONE], or a chunk whose text, finish reason and usage are collected. Returns -1 with a
 * Python exception set, 1 with `*error` set when the stream broke, else 0. */
static int read_event(Tap *self, const char *payload, Py_ssize_t len, PyObject *texts, PyObject **finish,
                      PyObject **usage, PyObject **error) {
    if (len == 6 && memcmp(payload, "[DONE]", 6) == 0) {
        self->done = 1;
        return 0;
    }
    PyObject *raw = PyBytes_FromStringAndSize(payload, len);
    if (raw == NULL) return -1;
    PyObject *event = PyObject_CallOneArg(orjson_loads, raw);
    Py_DECREF(raw);
    if (event == NULL) {
        if (!PyErr_ExceptionMatches(json_decode_error)) return -1;
        PyErr_Clear();
        *error = PyUnicode_FromString("upstream sent an event that is not JSON");
        return *error ? 1 : -1;
    }
    int status = 0;
    if (!PyDict_Check(event)) {
        *error = PyUnicode_FromString("upstream sent an event that is not a JSON object");
        status = *error ? 1 : -1;
        goto done;
    }
    PyObject *failure = PyDict_GetItemWithError(event, s_error);
    if (failure != NULL) { /* an error object sent inside the stream */
        PyObject *message = failure;
        if (PyDict_Check(failure)) {
            message = PyDict_GetItemWithError(failure, s_message);
            if (message == NULL) {
                if (PyErr_Occurred()) goto fail;
                message = Py_None;
            }
        }
        *error = PyUnicode_FromFormat("upstream error in stream: %S", message);
        status = *error ? 1 : -1;
        goto done;
    }
    if (PyErr_Occurred()) goto fail;
    PyObject *choices = PyDict_GetItemWithError(event, s_choices);
    if (choices != NULL && PyList_Check(choices) && PyList_GET_SIZE(choices) > 0 &&
        PyDict_Check(PyList_GET_ITEM(choices, 0))) {
        PyObject *choice = PyList_GET_ITEM(choices, 0);
        PyObject *delta = PyDict_GetItemWithError(choice, s_delta);
        if (delta != NULL && PyDict_Check(delta)) {
            PyObject *content = PyDict_GetItemWithError(delta, s_content);
            if (content != NULL && PyUnicode_Check(content) && PyUnicode_GET_LENGTH(content) > 0 &&
                PyList_Append(texts, content) < 0)
                goto fail;
        }
        if (PyErr_Occurred()) goto fail;
        PyObject *reason = PyDict_GetItemWithError(choice, s_finish_reason);
        if (reason != NULL && PyUnicode_Check(reason) && PyUnicode_GET_LENGTH(reason) > 0) Py_XSETREF(*finish, Py_NewRef(reason));
    }
    if (PyErr_Occurred()) goto fail;
    PyObject *figures = PyDict_GetItemWithError(event, s_usage);
    if (figures != NULL && PyDict_Check(figures)) Py_XSETREF(*usage, Py_NewRef(figures));
    if (PyErr_Occurred()) goto fail;
done:
    Py_DECREF(event);
    return status;
fail:
    Py_DECREF(event);
    return -1;
}

static int add_data_line(Tap *self, const char *value, Py_ssize_t len) {
    if (self->has_data && buf_add(&self->event, "\n", 1) < 0) return -1;
    self->has_data = 1;
    return buf_add(&self->event, value, len);
}

/* Decode one read and write what it completed. */
static PyObject *pipe_read(Tap *self, const char *p, Py_ssize_t n) {
    PyObject *texts = PyList_New(0);
    PyObject *finish = NULL, *usage = NULL, *error = NULL, *text = NULL;
    if (texts == NULL) return NULL;
    while (n > 0 && !self->done && error == NULL) {
        const char *nl = memchr(p, '\n', n);
        if (nl == NULL) {
            if (buf_add(&self->line, p, n) < 0) goto fail;
            break;
        }
        const char *line = p;
        Py_ssize_t len = nl - p;
        if (self->line.len) {
            if (buf_add(&self->line, p, len) < 0) goto fail;
            line = self->line.data;
            len = self->line.len;
        }
        n -= nl + 1 - p;
        p = nl + 1;
        if (len && line[len - 1] == '\r') len--;
        if (len == 0) { /* the end of an event */
            if (self->has_data) {
                int status = read_event(self, self->event.data, self->event.len, texts, &finish, &usage, &error);
                self->event.len = 0;
                self->has_data = 0;
                if (status < 0) goto fail;
            }
        } else if (len >= 5 && memcmp(line, "data:", 5) == 0) {
            const char *value = line + 5;
            Py_ssize_t value_len = len - 5;
            if (value_len && value[0] == ' ') {
                value++;
                value_len--;
            }
            if (add_data_line(self, value, value_len) < 0) goto fail;
        } /* ":" comments, event:, id: and retry: lines carry nothing a chat completion needs */
        self->line.len = 0;
    }
    if (error == NULL && self->max_event > 0 && (self->line.len > self->max_event || self->event.len > self->max_event))
        error = PyUnicode_FromFormat("upstream sent an event over %zd bytes", self->max_event);
    if (error != NULL) { /* the stream broke: nothing of this read is relayed (as the Python decoder) */
        self->held = 1;
        if (emit_void(self, EV_ERROR, error, NULL) < 0) goto fail;
        goto end;
    }
    if ((finish != NULL || usage != NULL) && emit_void(self, EV_META, finish, usage) < 0) goto fail;
    Py_ssize_t count = PyList_GET_SIZE(texts);
    if (count > 0 && self->piping) {
        if (count == 1) {
            text = Py_NewRef(PyList_GET_ITEM(texts, 0));
        } else {
            text = join_texts(texts);
            if (text == NULL) goto fail;
        }
        if (write_text(self, text) < 0) goto fail;
    }
    if (self->done && self->piping && emit_void(self, EV_DONE, NULL, NULL) < 0) goto fail;
end:
    Py_DECREF(texts);
    Py_XDECREF(finish);
    Py_XDECREF(usage);
    Py_XDECREF(error);
    Py_XDECREF(text);
    Py_RETURN_NONE;
fail:
    Py_DECREF(texts);
    Py_XDECREF(finish);
    Py_XDECREF(usage);
    Py_XDECREF(error);
    Py_XDECREF(text);
    return NULL;
}

static PyObject *tap_on_body(Tap *self, PyObject *data) {
    if (!self->piping || self->held || self->done) {
        if (self->fallback == NULL) Py_RETURN_NONE;
        return PyObject_CallOneArg(self->fallback, data);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_INCREF(self); /* on_event may drop the last other reference */
    PyObject *result = pipe_read(self, view.buf, view.len);
    PyBuffer_Release(&view);
    Py_DECREF(self);
    return result;
}

static PyObject *tap_pipe(Tap *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"partial", "data_lines", "transport", "cycle", "control", "clock", "log",
                             "on_event", "next_id", "dense_gap", "last", "max_event", "max_chars", NULL};
    PyObject *partial, *data_lines, *transport, *cycle, *control, *clock, *log, *on_event;
    PyObject *log_events = NULL, *log_head = NULL, *log_wake = NULL;
    long long log_limit = 0;
    double log_refresh = 0;
    long long next_id;
    double dense_gap, last;
    Py_ssize_t max_event, max_chars;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$SO!OOOOOOLddnn:pipe", kwlist, &partial, &PyList_Type, &data_lines,
                                     &transport, &cycle, &control, &clock, &log, &on_event, &next_id, &dense_gap,
                                     &last, &max_event, &max_chars))
        return NULL;
    if (log != Py_None && !PyArg_ParseTuple(log, "O!SOLd:log", &PyByteArray_Type, &log_events, &log_head, &log_wake,
                                            &log_limit, &log_refresh))
        return NULL;
    PyObject *flow = PyObject_GetAttrString(cycle, "flow");
    if (flow == NULL) return NULL;
    self->line.len = self->event.len = 0;
    self->has_data = 0;
    if (buf_add(&self->line, PyBytes_AS_STRING(partial), PyBytes_GET_SIZE(partial)) < 0) goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(data_lines); i++) {
        PyObject *value = PyList_GET_ITEM(data_lines, i);
        if (!PyBytes_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "data_lines must hold bytes");
            goto fail;
        }
        if (add_data_line(self, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)) < 0) goto fail;
    }
    PyObject *write = PyObject_GetAttr(transport, s_write);
    if (write == NULL) goto fail;
    tap_drop_writer(self);
    self->write = write;
    self->cycle = Py_NewRef(cycle);
    self->flow = flow;
    self->control = Py_NewRef(control);
    self->clock = Py_NewRef(clock);
    self->log_events = Py_XNewRef(log_events);
    self->log_head = Py_XNewRef(log_head);
    self->log_wake = Py_XNewRef(log_wake);
    self->log_limit = log_limit;
    self->log_refresh = log_refresh;
    self->log_refreshed = last; /* the turn's first events, a moment ago, (re)set the expiry */
    self->on_event = Py_NewRef(on_event);
    self->next_id = next_id;
    self->dense_gap = dense_gap;
    self->last = last;
    self->max_event = max_event;
    self->max_chars = max_chars;
    self->sent_chars = 0;
    Py_SETREF(self->texts, PyList_New(0));
    if (self->texts == NULL) return NULL;
    self->piping = 1;
    self->held = self->done = 0;
    Py_RETURN_NONE;
fail:
    Py_DECREF(flow);
    return NULL;
}

static PyObject *tap_hold(Tap *self, PyObject *Py_UNUSED(ignored)) {
    self->held = 1;
    Py_RETURN_NONE;
}

static PyObject *tap_release(Tap *self, PyObject *Py_UNUSED(ignored)) {
    self->held = 0;
    Py_RETURN_NONE;
}

static PyObject *tap_detach(Tap *self, PyObject *Py_UNUSED(ignored)) {
    Py_CLEAR(self->write);
    Py_RETURN_NONE;
}

static PyObject *tap_stop(Tap *self, PyObject *Py_UNUSED(ignored)) {
    self->piping = 0;
    tap_drop_writer(self);
    Py_RETURN_NONE;
}

static PyObject *tap_add_sent(Tap *self, PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "add_sent takes a str");
        return NULL;
    }
    if (count_sent(self, text) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *tap_take_text(Tap *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *joined = join_texts(self->texts);
    if (joined == NULL) return NULL;
    Py_SETREF(self->texts, PyList_New(0));
    if (self->texts == NULL) {
        Py_DECREF(joined);
        return NULL;
    }
    return joined;
}

static PyObject *tap_get_next_id(Tap *self, void *Py_UNUSED(closure)) { return PyLong_FromLongLong(self->next_id); }
static PyObject *tap_get_held(Tap *self, void *Py_UNUSED(closure)) { return PyBool_FromLong(self->held); }

static PyMethodDef tap_methods[] = {
    {"on_body", (PyCFunction)tap_on_body, METH_O, "httptools' body callback: pipe the bytes, or hand them to fallback."},
    {"pipe", (PyCFunction)(void (*)(void))tap_pipe, METH_VARARGS | METH_KEYWORDS,
     "Start piping: the Python decoder's state, the visitor's transport and uvicorn's cycle, the turn's control."},
    {"hold", (PyCFunction)tap_hold, METH_NOARGS, "Later bytes go to fallback until release()."},
    {"release", (PyCFunction)tap_release, METH_NOARGS, "Pipe again (the caller feeds what fallback kept)."},
    {"detach", (PyCFunction)tap_detach, METH_NOARGS, "The visitor is gone: frames go to the log only."},
    {"stop", (PyCFunction)tap_stop, METH_NOARGS, "Stop piping for good; bytes go to fallback."},
    {"add_sent", (PyCFunction)tap_add_sent, METH_O, "Count a text written by Python (a write that had to wait)."},
    {"take_text", (PyCFunction)tap_take_text, METH_NOARGS, "Everything written so far, joined; forgets it."},
    {NULL},
};

static PyGetSetDef tap_getset[] = {
    {"next_id", (getter)tap_get_next_id, NULL, "the id of the next frame", NULL},
    {"held", (getter)tap_get_held, NULL, "bytes go to fallback", NULL},
    {NULL},
};

static PyTypeObject TapType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "backend.chat._token_pipe.Tap",
    .tp_basicsize = sizeof(Tap),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "httptools' body callback for one upstream connection; pipes tokens to the visitor once started.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)tap_init,
    .tp_dealloc = (destructor)tap_dealloc,
    .tp_traverse = (traverseproc)tap_traverse,
    .tp_clear = (inquiry)tap_clear,
    .tp_methods = tap_methods,
    .tp_getset = tap_getset,
};

static struct PyModuleDef token_pipe_module = {
    PyModuleDef_HEAD_INIT, .m_name = "backend.chat._token_pipe", .m_doc = "The token relay's native hot path.",
    .m_size = -1,
};

#define INTERN(var, text)                                                                                    \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;

PyMODINIT_FUNC PyInit__token_pipe(void) {
    PyObject *orjson = PyImport_ImportModule("orjson");
    if (orjson == NULL) return NULL;
    orjson_loads = PyObject_GetAttrString(orjson, "loads");
    orjson_dumps = PyObject_GetAttrString(orjson, "dumps");
    json_decode_error = PyObject_GetAttrString(orjson, "JSONDecodeError");
    Py_DECREF(orjson);
    if (orjson_loads == NULL || orjson_dumps == NULL || json_decode_error == NULL) return NULL;
    INTERN(empty_str, "");
    INTERN(s_write, "write");
    INTERN(s_reason, "reason");
    INTERN(s_since, "since");
    INTERN(s_disconnected, "disconnected");
    INTERN(s_write_paused, "write_paused");
    INTERN(s_choices, "choices");
    INTERN(s_delta, "delta");
    INTERN(s_content, "content");
    INTERN(s_finish_reason, "finish_reason");
    INTERN(s_usage, "usage");
    INTERN(s_error, "error");
    INTERN(s_message, "message");
    if (PyType_Ready(&TapType) < 0) return NULL;
    PyObject *module = PyModule_Create(&token_pipe_module);
    if (module == NULL) return NULL;
    if (PyModule_AddObjectRef(module, "Tap", (PyObject *)&TapType) < 0 ||
        PyModule_AddIntConstant(module, "META", EV_META) < 0 || PyModule_AddIntConstant(module, "ERROR", EV_ERROR) < 0 ||
        PyModule_AddIntConstant(module, "DONE", EV_DONE) < 0 ||
        PyModule_AddIntConstant(module, "CANCELLED", EV_CANCELLED) < 0 ||
        PyModule_AddIntConstant(module, "FULL", EV_FULL) < 0 || PyModule_AddIntConstant(module, "DENSE", EV_DENSE) < 0 ||
        PyModule_AddIntConstant(module, "LIMIT", EV_LIMIT) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
