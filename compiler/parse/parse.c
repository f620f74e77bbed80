/* Runs the scanner and parser over one file, and loads a program with its imports. */
#include "parse.h"
#include "../support/util.h"
#include "parser.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void *yyscan_t;
int pn_yylex_init_extra(pn_parser *extra, yyscan_t *scanner);
int pn_yylex_destroy(yyscan_t scanner);
struct yy_buffer_state *pn_yy_scan_bytes(const char *bytes, int len, yyscan_t scanner);
int pn_yyparse(void *scanner, pn_parser *p);

bool pn_parse_file(pn_program *prog, pn_module *mod) {
    const pn_source *src = pn_source_get(prog->diags, mod->file);
    pn_parser p = {.arena = &prog->arena, .diags = prog->diags, .mod = mod, .file = mod->file,
                   .text = src->text, .len = src->len};
    if (src->len > PN_MAX_FILE) { /* text handed to pn_program_load, not read from a file */
        pn_error(prog->diags, (pn_loc){mod->file, 0, 0}, "file is larger than %zu MiB", PN_MAX_FILE >> 20);
        return false;
    }
    int before = prog->diags->nerrors;
    yyscan_t scanner;
    if (pn_yylex_init_extra(&p, &scanner) != 0) {
        pn_fatal(prog->diags, PN_NOLOC, "cannot create scanner");
        return false;
    }
    pn_yy_scan_bytes(src->text, (int)src->len, scanner);
    int rc = pn_yyparse(scanner, &p);
    pn_yylex_destroy(scanner);
    return rc == 0 && prog->diags->nerrors == before;
}

void pn_program_init(pn_program *p, pn_diags *d) {
    memset(p, 0, sizeof *p);
    pn_arena_init(&p->arena);
    p->diags = d;
}

void pn_program_free(pn_program *p) {
    for (int i = 0; i < p->modules.len; i++) {
        pn_module *m = p->modules.items[i];
        pn_strmap_free(&m->block_map);
        pn_strmap_free(&m->ns_map);
    }
    pn_strmap_free(&p->by_path);
    pn_arena_free(&p->arena);
}

static const char *module_ns(pn_program *p, const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".pnet") == 0) n -= 5;
    return pn_arena_strndup(&p->arena, base, n);
}

static pn_module *new_module(pn_program *p, const char *path, const char *key, char *text, size_t len) {
    pn_module *m = pn_arena_alloc(&p->arena, sizeof *m);
    m->path = pn_arena_strdup(&p->arena, path);
    m->ns = module_ns(p, path);
    m->file = pn_source_add(p->diags, path, text, len);
    pn_vec_push(&p->arena, &p->modules, m);
    pn_strmap_put(&p->by_path, pn_arena_strdup(&p->arena, key), m);
    return m;
}

static void load_imports(pn_program *p, pn_module *m);

/* Registers the blocks of m by name, reporting duplicates. */
static void index_blocks(pn_program *p, pn_module *m) {
    for (int i = 0; i < m->blocks.len; i++) {
        pn_block_def *b = m->blocks.items[i];
        pn_block_def *old = pn_strmap_get(&m->block_map, b->name);
        if (old) {
            pn_error(p->diags, b->name_loc, "redefinition of block '%s'", b->name);
            pn_note(p->diags, old->name_loc, "previous definition is here");
            continue;
        }
        pn_strmap_put(&m->block_map, b->name, b);
    }
}

static pn_module *parse_module(pn_program *p, pn_module *m) {
    m->state = 1;
    pn_parse_file(p, m);
    if (!p->diags->fatal) index_blocks(p, m);
    if (!p->diags->fatal) load_imports(p, m);
    m->state = 2;
    return m;
}

static bool file_exists(const char *path) {
    return access(path, R_OK) == 0;
}

/* Whether dir/rel exists, into buf; dir is appended to the list of searched directories. */
static bool try_dir(const char *dir, int dlen, const char *rel, char *buf, size_t n, char *tried, size_t tn) {
    size_t used = strlen(tried);
    if (used + 8 < tn) snprintf(tried + used, tn - used, "%s'%.*s'", used ? ", " : "", dlen, dir);
    if (dlen == 1 && dir[0] == '.') snprintf(buf, n, "%s", rel); /* paths stay as the user wrote them */
    else snprintf(buf, n, "%.*s/%s", dlen, dir, rel);
    return file_exists(buf);
}

static char *find_in(pn_program *p, const char *rel, const char *importer, bool stdlib, char *tried, size_t tn);

/* Finds an import in: -I dirs, PNET_PATH, the importing file's directory, the stdlib. The
 * directories searched go to tried. */
static char *find_import(pn_program *p, const char *name, const char *importer, char *tried, size_t tn) {
    char rel[PATH_MAX];
    size_t n = strlen(name);
    tried[0] = 0;
    if (snprintf(rel, sizeof rel, "%s%s", name, n > 5 && strcmp(name + n - 5, ".pnet") == 0 ? "" : ".pnet") >=
        (int)sizeof rel)
        return NULL;
    return find_in(p, rel, importer, true, tried, tn);
}

char *pn_program_find_file(pn_program *p, const char *rel, const char *from, char *tried, size_t tn) {
    tried[0] = 0;
    return find_in(p, rel, from, false, tried, tn);
}

static char *find_in(pn_program *p, const char *rel, const char *importer, bool stdlib, char *tried, size_t tn) {
    char buf[PATH_MAX * 2];
    if (rel[0] == '/') return file_exists(rel) ? pn_xstrdup(rel) : NULL;
    for (int i = 0; i < p->include_dirs.len; i++) {
        const char *dir = p->include_dirs.items[i];
        if (try_dir(dir, (int)strlen(dir), rel, buf, sizeof buf, tried, tn)) return pn_xstrdup(buf);
    }
    const char *env = getenv("PNET_PATH");
    if (env && *env) {
        const char *s = env;
        while (*s) {
            const char *e = strchr(s, ':');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            if (len > 0 && len < PATH_MAX && try_dir(s, (int)len, rel, buf, sizeof buf, tried, tn)) return pn_xstrdup(buf);
            s += len + (e != NULL);
        }
    }
    const char *slash = strrchr(importer, '/');
    if (slash ? try_dir(importer, (int)(slash - importer), rel, buf, sizeof buf, tried, tn)
              : try_dir(".", 1, rel, buf, sizeof buf, tried, tn))
        return pn_xstrdup(buf);
    if (stdlib && p->stdlib_dir && try_dir(p->stdlib_dir, (int)strlen(p->stdlib_dir), rel, buf, sizeof buf, tried, tn))
        return pn_xstrdup(buf);
    return NULL;
}

static void load_imports(pn_program *p, pn_module *m) {
    for (int i = 0; i < m->imports.len && !p->diags->fatal; i++) {
        pn_import *im = m->imports.items[i];
        if (!*im->path) {
            pn_error(p->diags, im->loc, "empty import path");
            continue;
        }
        char tried[2048];
        char *path = find_import(p, im->path, m->path, tried, sizeof tried);
        if (!path) {
            pn_error(p->diags, im->loc, "module '%s' not found in the -I directories, PNET_PATH, the directory of '%s' or the stdlib",
                     im->path, m->path);
            if (tried[0]) pn_note(p->diags, PN_NOLOC, "searched %s", tried);
            continue;
        }
        char canon[PATH_MAX];
        const char *key = realpath(path, canon) ? canon : path;
        pn_module *dep = pn_strmap_get(&p->by_path, key);
        if (dep && dep->state == 1) {
            pn_error(p->diags, im->loc, "import cycle: '%s' imports itself through '%s'", dep->path, m->path);
            free(path);
            continue;
        }
        if (!dep) {
            size_t len;
            char why[256];
            char *text = pn_read_file(path, PN_MAX_FILE, &len, why, sizeof why);
            if (!text) {
                pn_error(p->diags, im->loc, "cannot read module '%s': %s", path, why);
                free(path);
                continue;
            }
            dep = parse_module(p, new_module(p, path, key, text, len));
        }
        free(path);
        im->mod = dep;
        pn_module *old = pn_strmap_get(&m->ns_map, dep->ns);
        if (old && old != dep) {
            pn_error(p->diags, im->loc, "import of '%s' clashes with the earlier module '%s', also named '%s'",
                     dep->path, old->path, dep->ns);
            continue;
        }
        pn_strmap_put(&m->ns_map, dep->ns, dep);
    }
}

pn_module *pn_program_load(pn_program *p, const char *path, const char *text, size_t len) {
    char *buf;
    if (text) {
        buf = pn_xmalloc(len + 1);
        memcpy(buf, text, len);
        buf[len] = 0;
    } else {
        char why[256];
        buf = pn_read_file(path, PN_MAX_FILE, &len, why, sizeof why);
        if (!buf) {
            pn_error(p->diags, PN_NOLOC, "cannot read '%s': %s", strcmp(path, "-") == 0 ? "<stdin>" : path, why);
            return NULL;
        }
    }
    if (!text && strcmp(path, "-") == 0) path = "<stdin>"; /* as clang names it */
    char canon[PATH_MAX];
    const char *key = !text && realpath(path, canon) ? canon : path;
    pn_module *m = new_module(p, path, key, buf, len);
    parse_module(p, m);
    return m;
}
