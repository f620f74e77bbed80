/* The syntax tree of a .pnet file, allocated in the module's arena. Every node has a range. */
#ifndef PN_AST_H
#define PN_AST_H
#include "../support/arena.h"
#include "../support/diag.h"
#include "../support/strmap.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    PN_EX_INT,
    PN_EX_FLOAT,
    PN_EX_BOOL,
    PN_EX_NAME,   /* identifier */
    PN_EX_CALL,   /* op or block call, maybe qualified: ns.name(args) */
    PN_EX_LIST,   /* [a, b, c] */
    PN_EX_BINARY, /* a + b, a - b, a * b, a / b */
    PN_EX_NEG,    /* -a */
} pn_expr_kind;

typedef struct pn_expr pn_expr;

typedef struct pn_arg {
    const char *key; /* NULL for positional */
    pn_loc key_loc;
    pn_expr *value;
} pn_arg;

struct pn_expr {
    pn_expr_kind kind;
    pn_loc loc;
    int64_t ival;
    double fval;
    bool bval;
    const char *name; /* NAME, CALL callee */
    pn_loc name_loc;
    const char *ns;   /* CALL: module qualifier or NULL */
    pn_loc ns_loc;
    pn_vec args;      /* CALL: pn_arg*; LIST: pn_expr* */
    char op;          /* BINARY: '+', '-', '*', '/' */
    pn_expr *lhs, *rhs;
};

typedef struct pn_type_ast {
    const char *dtype;
    pn_loc dtype_loc, loc;
    pn_vec dims; /* pn_expr*: integers, or the name `batch` first */
} pn_type_ast;

typedef enum {
    PN_ST_INPUT,     /* input x : f32[...];   or, in train, label : i32[...]; */
    PN_ST_CONST,     /* const x : f32[...] = "file.npy";   or   = [numbers]; */
    PN_ST_ASSIGN,    /* [output] x = expr; */
    PN_ST_OUTPUT,    /* output x; */
    PN_ST_DIRECTIVE, /* @name(args) followed by ';', a statement or a { } group */
    PN_ST_TRAIN,     /* train { ... } */
    PN_ST_RETURN,    /* return expr; (blocks) */
} pn_stmt_kind;

typedef enum { PN_DIR_ALONE, PN_DIR_STMT, PN_DIR_GROUP } pn_dir_form;

typedef struct pn_stmt {
    pn_stmt_kind kind;
    pn_loc loc;       /* for diagnostics: a directive's own text, `@name(args)` */
    pn_loc full;      /* the whole statement, a directive's statement or { } group included */
    const char *name;
    pn_loc name_loc;
    bool is_output, has_input_kw;
    pn_expr *value;
    pn_type_ast *type;
    const char *path; /* CONST: the .npy file, as written (NULL for a list of numbers) */
    pn_loc path_loc;
    pn_dir_form form;
    pn_vec args; /* DIRECTIVE: pn_arg* */
    pn_vec body; /* DIRECTIVE, TRAIN: pn_stmt* */
} pn_stmt;

typedef struct pn_param {
    const char *name;
    pn_loc loc;
    pn_expr *def; /* default value or NULL */
} pn_param;

typedef struct pn_module pn_module;

typedef struct pn_block_def {
    const char *name;
    pn_loc loc, name_loc;
    pn_vec params; /* pn_param* */
    pn_vec body;   /* pn_stmt* */
    pn_module *mod;
    int state; /* checker: 0 unchecked, 1 valid, 2 has errors */
} pn_block_def;

typedef struct pn_network_def {
    const char *name;
    pn_loc loc, name_loc;
    pn_vec body;
} pn_network_def;

typedef struct pn_import {
    const char *path;
    pn_loc loc;
    pn_module *mod; /* resolved by the loader, NULL on failure */
} pn_import;

struct pn_module {
    const char *path;    /* file path as opened */
    const char *ns;      /* name used to qualify its blocks: basename without .pnet */
    uint32_t file;
    pn_vec imports;      /* pn_import* */
    pn_vec blocks;       /* pn_block_def* */
    pn_vec networks;     /* pn_network_def* */
    pn_strmap block_map; /* name -> pn_block_def* */
    pn_strmap ns_map;    /* qualifier -> pn_module* */
    int state;           /* loader: 0 new, 1 loading, 2 done */
};

/* Every module of one compilation shares one arena and one diagnostics sink. */
typedef struct pn_program {
    pn_arena arena;
    pn_diags *diags;
    pn_vec modules;      /* pn_module* in load order; modules[0] is the main file */
    pn_strmap by_path;   /* canonical path -> pn_module* */
    pn_vec include_dirs; /* char*: -I directories */
    pn_vec deps;         /* char*: other files the checker read (constants' .npy), for -MD */
    const char *stdlib_dir;
} pn_program;

#endif
