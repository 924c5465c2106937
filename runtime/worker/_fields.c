/* runtime.worker._fields: a request's headers as WSGI environ entries, collected in C.
 *
 * httptools calls its protocol's on_header(name, value) once per header. With a Python method
 * there, every header costs a Python frame, a tuple and a second pass to build the environ; the
 * router sends eleven headers with every call, and read that way they cost a worker woken for
 * each call 5-24 us of its latency at 1 connection (docs/router-data-path.md). A Fields object is
 * that on_header: called from httptools without a frame, it adds the header's environ entry to
 * its dict as server.FieldsPy does (the same rules, the fallback when this module is not built;
 * runtime/tests/test_worker_fields.py holds both to the same results).
 *
 * Built per runtime interpreter by `make workerext` (part of `make setup`).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fields; /* dict: environ key (str) -> value (str) */
    PyObject *keys;   /* dict: header name (bytes) -> environ key, shared (server._ENVIRON_KEYS) */
    PyObject *key_of; /* name -> environ key, for a name not in keys (it may add it there) */
    int expect;       /* an "Expect: 100-continue" was seen */
} Fields;

static PyObject *S_COOKIE, *S_EXPECT, *S_COMMA, *S_SEMICOLON;

static int add(Fields *self, PyObject *name, PyObject *value) {
    PyObject *key = PyDict_GetItemWithError(self->keys, name);
    if (key) {
        Py_INCREF(key);
    } else {
        if (PyErr_Occurred()) return -1;
        key = PyObject_CallOneArg(self->key_of, name);
        if (!key) return -1;
        if (!PyUnicode_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "key_of must return a str");
            Py_DECREF(key);
            return -1;
        }
    }
    PyObject *text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
    if (!text) goto failed;
    PyObject *before = PyDict_GetItemWithError(self->fields, key);
    if (before) { /* a repeated header: one value, joined as PEP 3333 servers join them */
        PyObject *separator = PyUnicode_Compare(key, S_COOKIE) == 0 ? S_SEMICOLON : S_COMMA;
        PyObject *joined = PyUnicode_FromFormat("%U%U%U", before, separator, text);
        Py_SETREF(text, joined);
        if (!text) goto failed;
    } else if (PyErr_Occurred()) {
        goto failed;
    }
    if (PyDict_SetItem(self->fields, key, text) < 0) goto failed;
    if (PyBytes_GET_SIZE(value) == 12 && strncasecmp(PyBytes_AS_STRING(value), "100-continue", 12) == 0 &&
        PyUnicode_Compare(key, S_EXPECT) == 0)
        self->expect = 1;
    Py_DECREF(text);
    Py_DECREF(key);
    return 0;
failed:
    Py_XDECREF(text);
    Py_DECREF(key);
    return -1;
}

static PyObject *fields_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (n != 2 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "Fields takes a header's name and value");
        return NULL;
    }
    if (!PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "a header's name and value are bytes");
        return NULL;
    }
    if (add((Fields *)callable, args[0], args[1]) < 0) return NULL;
    Py_RETURN_NONE;
}

static int ready(Fields *self) {
    if (self->fields) return 1;
    PyErr_SetString(PyExc_TypeError, "Fields was not initialized");
    return 0;
}

static PyObject *fields_take(Fields *self, PyObject *unused) {
    if (!ready(self)) return NULL;
    PyObject *fresh = PyDict_New();
    if (!fresh) return NULL;
    PyObject *taken = self->fields;
    self->fields = fresh;
    self->expect = 0;
    return taken;
}

static PyObject *fields_clear(Fields *self, PyObject *unused) {
    if (!ready(self)) return NULL;
    if (PyDict_GET_SIZE(self->fields)) PyDict_Clear(self->fields);
    self->expect = 0;
    Py_RETURN_NONE;
}

static PyObject *fields_get_expect(Fields *self, void *unused) {
    return PyBool_FromLong(self->expect);
}

static PyObject *fields_get_fields(Fields *self, void *unused) {
    if (!ready(self)) return NULL;
    return Py_NewRef(self->fields);
}

static int fields_init(Fields *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"keys", "key_of", NULL};
    PyObject *keys, *key_of;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O:Fields", kwlist, &PyDict_Type, &keys, &key_of)) return -1;
    if (!PyCallable_Check(key_of)) {
        PyErr_SetString(PyExc_TypeError, "key_of must be callable");
        return -1;
    }
    PyObject *fields = PyDict_New();
    if (!fields) return -1;
    Py_XSETREF(self->fields, fields);
    Py_XSETREF(self->keys, Py_NewRef(keys));
    Py_XSETREF(self->key_of, Py_NewRef(key_of));
    self->expect = 0;
    self->vectorcall = fields_vectorcall;
    return 0;
}

static int fields_traverse(Fields *self, visitproc visit, void *arg) {
    Py_VISIT(self->fields);
    Py_VISIT(self->keys);
    Py_VISIT(self->key_of);
    return 0;
}

static int fields_clear_refs(Fields *self) {
    Py_CLEAR(self->fields);
    Py_CLEAR(self->keys);
    Py_CLEAR(self->key_of);
    return 0;
}

static void fields_dealloc(Fields *self) {
    PyObject_GC_UnTrack(self);
    fields_clear_refs(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef fields_methods[] = {
    {"take", (PyCFunction)fields_take, METH_NOARGS, "The entries so far, and start afresh."},
    {"clear", (PyCFunction)fields_clear, METH_NOARGS, "Forget the entries so far."},
    {NULL},
};

static PyGetSetDef fields_getset[] = {
    {"expect", (getter)fields_get_expect, NULL, "An Expect: 100-continue was among the headers.", NULL},
    {"fields", (getter)fields_get_fields, NULL, "The entries so far (environ key: value).", NULL},
    {NULL},
};

static PyTypeObject FieldsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runtime.worker._fields.Fields",
    .tp_doc = "Fields(keys, key_of): called as fields(name, value) for each header of a request.",
    .tp_basicsize = sizeof(Fields),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Fields, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)fields_init,
    .tp_traverse = (traverseproc)fields_traverse,
    .tp_clear = (inquiry)fields_clear_refs,
    .tp_dealloc = (destructor)fields_dealloc,
    .tp_methods = fields_methods,
    .tp_getset = fields_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "runtime.worker._fields", "A request's headers as WSGI environ entries.", -1, NULL,
};

PyMODINIT_FUNC PyInit__fields(void) {
    S_COOKIE = PyUnicode_InternFromString("HTTP_COOKIE");
    S_EXPECT = PyUnicode_InternFromString("HTTP_EXPECT");
    S_COMMA = PyUnicode_InternFromString(",");
    S_SEMICOLON = PyUnicode_InternFromString("; ");
    if (!S_COOKIE || !S_EXPECT || !S_COMMA || !S_SEMICOLON || PyType_Ready(&FieldsType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Fields", (PyObject *)&FieldsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
