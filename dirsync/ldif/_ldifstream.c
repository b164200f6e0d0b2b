/*
 * dirsync.ldif._ldifstream: search results written as LDIF without building a
 * Python object per entry or value.
 *
 * `dirsync export` of an LDAP directory spends its time turning every
 * attribute value into a Python bytes object (python-ldap) and back into a
 * line of text (the LDIF writer). This module reads the messages of one
 * search page with libldap, on the connection python-ldap opened, bound
 * and secured, and writes each entry straight to a file descriptor, with
 * exactly the rules of dirsync.ldif.io.LDIFWriter.entry: RFC 2849
 * SAFE-STRING values as they are, others (and every value of a binary
 * attribute type) in base64, lines folded at `cols` columns.
 *
 * python-ldap's connection object starts with PyObject_HEAD followed by
 * its LDAP handle (Modules/LDAPObject.h, unchanged since python-ldap 2).
 * The Python side checks that the handle read here is the connection's
 * own (same socket) before using this module at all.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <lber.h>
#include <ldap.h>

typedef struct {
    PyObject_HEAD
    LDAP *ldap;
} PythonLDAPHead;

static LDAP *
handle_of(PyObject *conn)
{
    if (strcmp(Py_TYPE(conn)->tp_name, "LDAP") != 0 ||
        Py_TYPE(conn)->tp_basicsize < (Py_ssize_t)sizeof(PythonLDAPHead)) {
        PyErr_SetString(PyExc_TypeError, "not a python-ldap connection object");
        return NULL;
    }
    LDAP *ld = ((PythonLDAPHead *)conn)->ldap;
    if (ld == NULL) {
        PyErr_SetString(PyExc_ValueError, "the LDAP connection is closed");
    }
    return ld;
}

/* -- output buffer -------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Buffer;

static int
reserve(Buffer *b, size_t more)
{
    if (b->len + more <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + more) {
        cap *= 2;
    }
    char *data = PyMem_RawRealloc(b->data, cap);
    if (data == NULL) {
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

/* Write the whole buffer to fd (without the GIL); 0, or errno. */
static int
drain(Buffer *b, int fd)
{
    size_t done = 0;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    while (done < b->len) {
        ssize_t n = write(fd, b->data + done, b->len - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = errno;
            break;
        }
        done += (size_t)n;
    }
    Py_END_ALLOW_THREADS
    b->len = 0;
    return err;
}

/* -- one LDIF line -------------------------------------------------------- */

static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Not an RFC 2849 SAFE-STRING: the rule of dirsync.ldif.io._unsafe. */
static int
unsafe(const unsigned char *v, size_t n)
{
    if (n == 0) {
        return 0;
    }
    unsigned char first = v[0];
    if (first == ' ' || first == ':' || first == '<' || v[n - 1] == ' ') {
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = v[i];
        if (c >= 0x80 || c == 0 || c == '\n' || c == '\r') {
            return 1;
        }
    }
    return 0;
}

/* Scratch space for one unfolded line. */
static Buffer line_buf;

/* Append "name: value" or "name:: base64(value)", folded as
 * ldifio._fold folds: the first `cols` characters, then lines of a space
 * and the next cols - 1 characters. */
static int
put_line(Buffer *out, const char *name, size_t name_len, const unsigned char *v,
         size_t n, int base64, size_t cols)
{
    Buffer *l = &line_buf;
    size_t need = name_len + 3 + (base64 ? 4 * ((n + 2) / 3) : n);
    l->len = 0;
    if (reserve(l, need) < 0) {
        return -1;
    }
    memcpy(l->data, name, name_len);
    l->len = name_len;
    if (base64) {
        memcpy(l->data + l->len, ":: ", 3);
        l->len += 3;
        char *p = l->data + l->len;
        size_t i = 0;
        for (; i + 2 < n; i += 3) {
            unsigned int t = (v[i] << 16) | (v[i + 1] << 8) | v[i + 2];
            *p++ = B64[(t >> 18) & 63];
            *p++ = B64[(t >> 12) & 63];
            *p++ = B64[(t >> 6) & 63];
            *p++ = B64[t & 63];
        }
        if (i < n) {
            unsigned int t = v[i] << 16;
            if (i + 1 < n) {
                t |= v[i + 1] << 8;
            }
            *p++ = B64[(t >> 18) & 63];
            *p++ = B64[(t >> 12) & 63];
            *p++ = (i + 1 < n) ? B64[(t >> 6) & 63] : '=';
            *p++ = '=';
        }
        l->len = (size_t)(p - l->data);
    } else {
        memcpy(l->data + l->len, ": ", 2);
        l->len += 2;
        memcpy(l->data + l->len, v, n);
        l->len += n;
    }
    size_t len = l->len;
    size_t folds = len > cols ? (len - cols + cols - 2) / (cols - 1) : 0;
    if (reserve(out, len + 2 * folds + 1) < 0) {
        return -1;
    }
    char *o = out->data + out->len;
    if (len <= cols) {
        memcpy(o, l->data, len);
        o += len;
    } else {
        memcpy(o, l->data, cols);
        o += cols;
        for (size_t at = cols; at < len; at += cols - 1) {
            size_t take = len - at < cols - 1 ? len - at : cols - 1;
            *o++ = '\n';
            *o++ = ' ';
            memcpy(o, l->data + at, take);
            o += take;
        }
    }
    *o++ = '\n';
    out->len = (size_t)(o - out->data);
    return 0;
}

/* -- binary attribute types, asked of Python once per spelling and page -- */

#define KNOWN_MAX 64
#define KNOWN_NAME 64

typedef struct {
    PyObject *decide;  /* is_binary(name) -> bool */
    int count;
    struct {
        char name[KNOWN_NAME];
        size_t len;
        int binary;
    } names[KNOWN_MAX];
} Known;

/* 1 binary, 0 not, -1 error (a Python exception is set). `name` is not
 * NUL-terminated: it points into the message. */
static int
is_binary(Known *known, const char *name, size_t len)
{
    for (int i = 0; i < known->count; i++) {
        if (known->names[i].len == len && memcmp(known->names[i].name, name, len) == 0) {
            return known->names[i].binary;
        }
    }
    PyObject *text = PyUnicode_DecodeUTF8(name, (Py_ssize_t)len, "replace");
    if (text == NULL) {
        return -1;
    }
    PyObject *answer = PyObject_CallOneArg(known->decide, text);
    Py_DECREF(text);
    if (answer == NULL) {
        return -1;
    }
    int binary = PyObject_IsTrue(answer);
    Py_DECREF(answer);
    if (binary >= 0 && known->count < KNOWN_MAX && len < KNOWN_NAME) {
        memcpy(known->names[known->count].name, name, len);
        known->names[known->count].len = len;
        known->names[known->count].binary = binary;
        known->count++;
    }
    return binary;
}

/* -- DNs in dirsync's one display form ------------------------------------ */

/* slapd returns specials hex-escaped (`O'Neil\2C Pat`); dirsync shows and
 * writes them backslash-escaped (`O'Neil\, Pat`, dirsync.entry.display_dn).
 * A DN with neither a backslash nor a quote is already in that form: only
 * the rare others are handed to Python. Returns a new bytes object, or NULL
 * with a Python exception set. */
static PyObject *
display_dn(const char *dn, size_t len)
{
    static PyObject *convert = NULL;
    if (convert == NULL) {
        PyObject *module = PyImport_ImportModule("dirsync.entry");
        if (module == NULL) {
            return NULL;
        }
        convert = PyObject_GetAttrString(module, "display_dn");
        Py_DECREF(module);
        if (convert == NULL) {
            return NULL;
        }
    }
    PyObject *text = PyUnicode_DecodeUTF8(dn, (Py_ssize_t)len, "surrogateescape");
    if (text == NULL) {
        return NULL;
    }
    PyObject *shown = PyObject_CallOneArg(convert, text);
    Py_DECREF(text);
    if (shown == NULL) {
        return NULL;
    }
    PyObject *encoded = PyUnicode_AsEncodedString(shown, "utf-8", "surrogateescape");
    Py_DECREF(shown);
    return encoded;
}

/* -- one entry ------------------------------------------------------------ */

/* The DN, then each attribute with its values, in one pass over the message
 * (as ldapsearch reads it: ldap_get_values_len would scan the entry again
 * for every attribute). */
static int
put_entry(Buffer *out, LDAP *ld, LDAPMessage *msg, size_t cols, Known *known)
{
    BerElement *ber = NULL;
    struct berval name = {0, NULL};
    struct berval *values = NULL;
    if (ldap_get_dn_ber(ld, msg, &ber, &name) != LDAP_SUCCESS) {
        if (ber != NULL) {
            ber_free(ber, 0);
        }
        PyErr_SetString(PyExc_RuntimeError, "libldap could not read an entry's DN");
        return -1;
    }
    const unsigned char *dn = (const unsigned char *)name.bv_val;
    size_t dn_len = name.bv_len;
    PyObject *shown = NULL;
    if (memchr(dn, '\\', dn_len) != NULL || memchr(dn, '"', dn_len) != NULL) {
        shown = display_dn(name.bv_val, name.bv_len);
        if (shown == NULL) {
            ber_free(ber, 0);
            return -1;
        }
        dn = (const unsigned char *)PyBytes_AS_STRING(shown);
        dn_len = (size_t)PyBytes_GET_SIZE(shown);
    }
    int put = put_line(out, "dn", 2, dn, dn_len, unsafe(dn, dn_len), cols);
    Py_XDECREF(shown);
    if (put < 0) {
        ber_free(ber, 0);
        PyErr_NoMemory();
        return -1;
    }
    int status = 0;
    while (ldap_get_attribute_ber(ld, msg, ber, &name, &values) == LDAP_SUCCESS) {
        if (name.bv_val == NULL) {
            break;
        }
        int binary = is_binary(known, name.bv_val, name.bv_len);
        if (binary < 0) {
            status = -1;
        }
        for (int i = 0; status == 0 && values != NULL && values[i].bv_val != NULL; i++) {
            const unsigned char *v = (const unsigned char *)values[i].bv_val;
            size_t n = values[i].bv_len;
            if (put_line(out, name.bv_val, name.bv_len, v, n, binary || unsafe(v, n),
                         cols) < 0) {
                PyErr_NoMemory();
                status = -1;
            }
        }
        if (values != NULL) {
            ber_memfree(values);
            values = NULL;
        }
        if (status < 0) {
            break;
        }
    }
    ber_free(ber, 0);
    if (status < 0) {
        return -1;
    }
    if (reserve(out, 1) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    out->data[out->len++] = '\n';
    return 0;
}

/* -- the page ------------------------------------------------------------- */

PyDoc_STRVAR(write_page_doc,
"write_page(conn, msgid, fd, cols, timeout, is_binary)\n"
"    -> (entries, rc, desc, info, cookie)\n\n"
"Write the entries of search `msgid` on python-ldap connection object `conn`\n"
"(its `_l`) to file descriptor `fd` as LDIF, until the search's result comes.\n"
"`is_binary(name)` says whether an attribute description's values are always\n"
"written in base64. Returns how many entries were written, the result code,\n"
"its text and the server's diagnostic message, and the paged-results cookie\n"
"(b'' on the last page). rc -1: no message within `timeout` seconds.");

static PyObject *
write_page(PyObject *self, PyObject *args)
{
    PyObject *conn, *decide;
    int msgid, fd;
    Py_ssize_t cols;
    double timeout;
    if (!PyArg_ParseTuple(args, "OiindO:write_page", &conn, &msgid, &fd, &cols, &timeout,
                          &decide)) {
        return NULL;
    }
    if (cols < 2) {
        PyErr_SetString(PyExc_ValueError, "cols must be at least 2");
        return NULL;
    }
    LDAP *ld = handle_of(conn);
    if (ld == NULL) {
        return NULL;
    }
    Buffer out = {NULL, 0, 0};
    Known known;
    known.decide = decide;
    known.count = 0;
    long entries = 0;
    PyObject *outcome = NULL;
    struct timeval tv;
    tv.tv_sec = (long)timeout;
    tv.tv_usec = (long)((timeout - (double)tv.tv_sec) * 1e6);
    for (;;) {
        LDAPMessage *msg = NULL;
        int kind;
        Py_BEGIN_ALLOW_THREADS
        kind = ldap_result(ld, msgid, LDAP_MSG_ONE, &tv, &msg);
        Py_END_ALLOW_THREADS
        if (kind == 0 || kind == -1) {
            int err = 0;
            if (kind == -1) {
                ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &err);
            }
            if (msg != NULL) {
                ldap_msgfree(msg);
            }
            int werr = drain(&out, fd);
            if (werr != 0) {
                errno = werr;
                PyErr_SetFromErrno(PyExc_OSError);
                goto done;
            }
            outcome = Py_BuildValue("(lissy)", entries, kind == 0 ? -1 : err,
                                    kind == 0 ? "no answer" : ldap_err2string(err), "", "");
            goto done;
        }
        if (kind == LDAP_RES_SEARCH_ENTRY) {
            int rc = put_entry(&out, ld, msg, (size_t)cols, &known);
            ldap_msgfree(msg);
            if (rc < 0) {
                goto done;
            }
            entries++;
            if (out.len >= (1 << 18)) {
                int err = drain(&out, fd);
                if (err != 0) {
                    errno = err;
                    PyErr_SetFromErrno(PyExc_OSError);
                    goto done;
                }
            }
            continue;
        }
        if (kind != LDAP_RES_SEARCH_RESULT) {  /* references, intermediates */
            ldap_msgfree(msg);
            continue;
        }
        int rc = 0;
        char *text = NULL;
        LDAPControl **controls = NULL;
        int parsed = ldap_parse_result(ld, msg, &rc, NULL, &text, NULL, &controls, 1);
        if (parsed != LDAP_SUCCESS) {
            rc = parsed;
        }
        struct berval cookie = {0, NULL};
        LDAPControl *page = controls ? ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, controls,
                                                         NULL) : NULL;
        ber_int_t estimate = 0;
        if (page != NULL &&
            ldap_parse_pageresponse_control(ld, page, &estimate, &cookie) != LDAP_SUCCESS) {
            cookie.bv_len = 0;
            cookie.bv_val = NULL;
        }
        int err = drain(&out, fd);
        if (err != 0) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
        } else {
            outcome = Py_BuildValue("(lissy#)", entries, rc, ldap_err2string(rc),
                                    text ? text : "", cookie.bv_val ? cookie.bv_val : "",
                                    (Py_ssize_t)cookie.bv_len);
        }
        if (cookie.bv_val != NULL) {
            ber_memfree(cookie.bv_val);
        }
        if (text != NULL) {
            ldap_memfree(text);
        }
        if (controls != NULL) {
            ldap_controls_free(controls);
        }
        goto done;
    }
done:
    PyMem_RawFree(out.data);
    return outcome;
}

PyDoc_STRVAR(socket_of_doc,
"socket_of(conn) -> int\n\n"
"The socket of python-ldap connection object `conn` (its `_l`), read through\n"
"the handle this module uses: equal to conn.get_option(OPT_DESC) when the\n"
"handle is the connection's own.");

static PyObject *
socket_of(PyObject *self, PyObject *conn)
{
    LDAP *ld = handle_of(conn);
    if (ld == NULL) {
        return NULL;
    }
    int sd = -1;
    if (ldap_get_option(ld, LDAP_OPT_DESC, &sd) != LDAP_OPT_SUCCESS) {
        sd = -1;
    }
    return PyLong_FromLong(sd);
}

static PyMethodDef methods[] = {
    {"write_page", write_page, METH_VARARGS, write_page_doc},
    {"socket_of", socket_of, METH_O, socket_of_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dirsync._ldifstream",
    "Search results written as LDIF straight from libldap.", -1, methods,
};

PyMODINIT_FUNC
PyInit__ldifstream(void)
{
    return PyModule_Create(&module);
}
