/* Grammar of .pnet files. Builds the AST of one module; see docs/language.md. */
%require "3.8"
%define api.pure full
%define api.prefix {pn_yy}
%define api.token.prefix {TOK_}
%define parse.error custom
%define parse.lac full
%locations
%expect 0
%param {void *scanner}
%parse-param {pn_parser *p}

%code requires {
#include "parse.h"
#define PN_YYLTYPE pn_loc
#define PN_YYLTYPE_IS_DECLARED 1
/* A rule's range covers its first to its last symbol; an empty rule is empty at the next token. */
#define YYLLOC_DEFAULT(Cur, Rhs, N)                                              \
    do {                                                                         \
        if (N) {                                                                 \
            (Cur).file = YYRHSLOC(Rhs, 1).file;                                  \
            (Cur).off = YYRHSLOC(Rhs, 1).off;                                    \
            (Cur).len = YYRHSLOC(Rhs, N).off + YYRHSLOC(Rhs, N).len - (Cur).off; \
        } else {                                                                 \
            (Cur).file = YYRHSLOC(Rhs, 0).file;                                  \
            (Cur).off = YYRHSLOC(Rhs, 0).off + YYRHSLOC(Rhs, 0).len;             \
            (Cur).len = 0;                                                       \
        }                                                                        \
    } while (0)
#define YYLOCATION_PRINT(File, Loc) ((void)0)
#define YYMAXDEPTH 20000
}

%union {
    struct { const char *s; } id;
    union { int64_t i; double f; } num;
    pn_expr *expr;
    pn_stmt *stmt;
    pn_arg *arg;
    pn_param *param;
    pn_type_ast *type;
    pn_vec vec;
}

%code {
#include <string.h>
int pn_yylex(PN_YYSTYPE *lval, pn_loc *lloc, void *scanner);
static void pn_yyerror(pn_loc *loc, void *scanner, pn_parser *p, const char *msg);

static pn_expr *new_expr(pn_parser *p, pn_expr_kind k, pn_loc loc) {
    pn_expr *e = pn_arena_alloc(p->arena, sizeof *e);
    e->kind = k;
    e->loc = loc;
    return e;
}
static pn_stmt *new_stmt(pn_parser *p, pn_stmt_kind k, pn_loc loc) {
    pn_stmt *s = pn_arena_alloc(p->arena, sizeof *s);
    s->kind = k;
    s->loc = loc;
    s->full = loc;
    return s;
}
static pn_arg *new_arg(pn_parser *p, const char *key, pn_loc key_loc, pn_expr *value) {
    pn_arg *a = pn_arena_alloc(p->arena, sizeof *a);
    a->key = key;
    a->key_loc = key_loc;
    a->value = value;
    return a;
}
static pn_vec vec1(pn_parser *p, void *item) {
    pn_vec v = {0};
    pn_vec_push(p->arena, &v, item);
    return v;
}
static pn_expr *binary(pn_parser *p, char op, pn_expr *a, pn_expr *b, pn_loc loc) {
    pn_expr *e = new_expr(p, PN_EX_BINARY, loc);
    e->op = op;
    e->lhs = a;
    e->rhs = b;
    return e;
}
#define A p->arena
}

%token NETWORK "'network'" INPUT "'input'" CONST "'const'" OUTPUT "'output'" BLOCK "'block'"
%token RETURN "'return'" IMPORT "'import'" TRAIN "'train'" TRUE "'true'" FALSE "'false'"
%token <id> IDENT "identifier" STRING "string"
%token <num> INT "integer" FLOAT "number"

%type <expr> expr primary call
%type <stmt> stmt directive
%type <arg> arg
%type <param> param
%type <type> type
%type <vec> stmts args args_opt exprs list_opt params params_opt

%left '+' '-'
%left '*' '/'
%precedence NEG

%initial-action {
    @$.file = p->file;
    @$.off = 0;
    @$.len = 0;
};

%%

/* file: { import | block | network } */
file:
  %empty
| file top
;

top:
  IMPORT STRING ';' {
      pn_import *im = pn_arena_alloc(A, sizeof *im);
      im->path = $2.s;
      im->loc = @2;
      pn_vec_push(A, &p->mod->imports, im);
  }
| BLOCK IDENT '(' params_opt ')' '{' stmts '}' {
      pn_block_def *b = pn_arena_alloc(A, sizeof *b);
      b->name = $2.s;
      b->loc = @$;
      b->name_loc = @2;
      b->params = $4;
      b->body = $7;
      b->mod = p->mod;
      pn_vec_push(A, &p->mod->blocks, b);
  }
| NETWORK IDENT '{' stmts '}' {
      pn_network_def *n = pn_arena_alloc(A, sizeof *n);
      n->name = $2.s;
      n->loc = @$;
      n->name_loc = @2;
      n->body = $4;
      pn_vec_push(A, &p->mod->networks, n);
  }
| error ';'
| error '}'
;

params_opt:
  %empty          { $$ = (pn_vec){0}; }
| params
| params ','
;

params:
  param             { $$ = vec1(p, $1); }
| params ',' param  { $$ = $1; pn_vec_push(A, &$$, $3); }
;

/* param: IDENT [ '=' expr ] */
param:
  IDENT {
      $$ = pn_arena_alloc(A, sizeof *$$);
      $$->name = $1.s;
      $$->loc = @1;
  }
| IDENT '=' expr {
      $$ = pn_arena_alloc(A, sizeof *$$);
      $$->name = $1.s;
      $$->loc = @1;
      $$->def = $3;
  }
;

stmts:
  %empty      { $$ = (pn_vec){0}; }
| stmts stmt  { $$ = $1; if ($2) pn_vec_push(A, &$$, $2); }
;

stmt:
  IDENT '=' expr ';' {
      $$ = new_stmt(p, PN_ST_ASSIGN, @$);
      $$->name = $1.s;
      $$->name_loc = @1;
      $$->value = $3;
  }
| OUTPUT IDENT '=' expr ';' {
      $$ = new_stmt(p, PN_ST_ASSIGN, @$);
      $$->name = $2.s;
      $$->name_loc = @2;
      $$->value = $4;
      $$->is_output = true;
  }
| OUTPUT IDENT ';' {
      $$ = new_stmt(p, PN_ST_OUTPUT, @$);
      $$->name = $2.s;
      $$->name_loc = @2;
      $$->is_output = true;
  }
| INPUT IDENT ':' type ';' {
      $$ = new_stmt(p, PN_ST_INPUT, @$);
      $$->name = $2.s;
      $$->name_loc = @2;
      $$->type = $4;
      $$->has_input_kw = true;
  }
| CONST IDENT ':' type '=' STRING ';' {
      $$ = new_stmt(p, PN_ST_CONST, @$);
      $$->name = $2.s;
      $$->name_loc = @2;
      $$->type = $4;
      $$->path = $6.s;
      $$->path_loc = @6;
  }
| CONST IDENT ':' type '=' expr ';' {
      $$ = new_stmt(p, PN_ST_CONST, @$);
      $$->name = $2.s;
      $$->name_loc = @2;
      $$->type = $4;
      $$->value = $6;
  }
| IDENT ':' type ';' {
      $$ = new_stmt(p, PN_ST_INPUT, @$);
      $$->name = $1.s;
      $$->name_loc = @1;
      $$->type = $3;
  }
| RETURN expr ';' {
      $$ = new_stmt(p, PN_ST_RETURN, @$);
      $$->value = $2;
  }
| TRAIN '{' stmts '}' {
      $$ = new_stmt(p, PN_ST_TRAIN, @1);
      $$->body = $3;
  }
| directive ';'           { $$ = $1; $$->form = PN_DIR_ALONE; $$->full = @$; }
| directive stmt          { $$ = $1; $$->form = PN_DIR_STMT; $$->full = @$; if ($2) pn_vec_push(A, &$$->body, $2); }
| directive '{' stmts '}' { $$ = $1; $$->form = PN_DIR_GROUP; $$->full = @$; $$->body = $3; }
| error ';'               { $$ = NULL; }
;

/* directive: '@' IDENT '(' [args] ')' */
directive:
  '@' IDENT '(' args_opt ')' {
      $$ = new_stmt(p, PN_ST_DIRECTIVE, @$);
      $$->name = $2.s;
      $$->name_loc = @2;
      $$->args = $4;
  }
;

/* type: IDENT '[' [dims] ']' */
type:
  IDENT '[' list_opt ']' {
      $$ = pn_arena_alloc(A, sizeof *$$);
      $$->dtype = $1.s;
      $$->dtype_loc = @1;
      $$->loc = @$;
      $$->dims = $3;
  }
;

expr:
  expr '+' expr          { $$ = binary(p, '+', $1, $3, @$); }
| expr '-' expr          { $$ = binary(p, '-', $1, $3, @$); }
| expr '*' expr          { $$ = binary(p, '*', $1, $3, @$); }
| expr '/' expr          { $$ = binary(p, '/', $1, $3, @$); }
| '-' expr %prec NEG     { $$ = new_expr(p, PN_EX_NEG, @$); $$->lhs = $2; }
| primary
;

primary:
  INT    { $$ = new_expr(p, PN_EX_INT, @$); $$->ival = $1.i; }
| FLOAT  { $$ = new_expr(p, PN_EX_FLOAT, @$); $$->fval = $1.f; }
| TRUE   { $$ = new_expr(p, PN_EX_BOOL, @$); $$->bval = true; }
| FALSE  { $$ = new_expr(p, PN_EX_BOOL, @$); $$->bval = false; }
| IDENT  { $$ = new_expr(p, PN_EX_NAME, @$); $$->name = $1.s; $$->name_loc = @1; }
| call
| '[' list_opt ']'  { $$ = new_expr(p, PN_EX_LIST, @$); $$->args = $2; }
| '(' expr ')'      { $$ = $2; }
;

/* call: [IDENT '.'] IDENT '(' [args] ')' */
call:
  IDENT '(' args_opt ')' {
      $$ = new_expr(p, PN_EX_CALL, @$);
      $$->name = $1.s;
      $$->name_loc = @1;
      $$->args = $3;
  }
| IDENT '.' IDENT '(' args_opt ')' {
      $$ = new_expr(p, PN_EX_CALL, @$);
      $$->ns = $1.s;
      $$->ns_loc = @1;
      $$->name = $3.s;
      $$->name_loc = @3;
      $$->args = $5;
  }
;

args_opt:
  %empty    { $$ = (pn_vec){0}; }
| args
| args ','
;

args:
  arg           { $$ = vec1(p, $1); }
| args ',' arg  { $$ = $1; pn_vec_push(A, &$$, $3); }
;

/* arg: [IDENT '='] expr */
arg:
  expr            { $$ = new_arg(p, NULL, PN_NOLOC, $1); }
| IDENT '=' expr  { $$ = new_arg(p, $1.s, @1, $3); }
;

list_opt:
  %empty     { $$ = (pn_vec){0}; }
| exprs
| exprs ','
;

exprs:
  expr             { $$ = vec1(p, $1); }
| exprs ',' expr   { $$ = $1; pn_vec_push(A, &$$, $3); }
;

%%

static void pn_yyerror(pn_loc *loc, void *scanner, pn_parser *p, const char *msg) {
    (void)scanner;
    if (strcmp(msg, "memory exhausted") == 0)
        pn_fatal(p->diags, *loc, "program is nested too deeply");
    else
        pn_error(p->diags, *loc, "%s", msg);
}

/* Describes a token kind for "expected ..." messages. */
static const char *token_desc(yysymbol_kind_t k) {
    switch (k) {
    case YYSYMBOL_YYEOF: return "end of file";
    default: return yysymbol_name(k);
    }
}

/* "expected ';' before 'h1'", or "unexpected 'h1'" when too many tokens could follow. A missing
 * ';' is reported after the previous token, and an unclosed bracket at end of file gets a note. */
static int yyreport_syntax_error(const yypcontext_t *ctx, void *scanner, pn_parser *p) {
    (void)scanner;
    if (p->stopped) return 0;
    yysymbol_kind_t exp[YYNTOKENS];
    int n = yypcontext_expected_tokens(ctx, exp, YYNTOKENS);
    yysymbol_kind_t la = yypcontext_token(ctx);
    pn_loc loc = *yypcontext_location(ctx);
    bool semi = false, close = false;
    for (int i = 0; i < n; i++) {
        semi |= strcmp(yysymbol_name(exp[i]), "';'") == 0;
        close |= strcmp(yysymbol_name(exp[i]), "'}'") == 0;
    }
    int nall = n;
    if (n > 5) n = 0; /* too many to list */
    if (semi) {
        pn_error(p->diags, (pn_loc){p->file, p->prev_end, 0}, "expected ';'");
        return 0;
    }
    /* The lookahead may itself be an opening bracket, already counted by the lexer. */
    int depth = p->depth;
    if (loc.len == 1 && loc.off < p->len && strchr("([{", p->text[loc.off])) depth--;
    /* Or a closing bracket, which the lexer already matched against the innermost open one. */
    if (loc.len == 1 && loc.off < p->len && strchr(")]}", p->text[loc.off]) && depth < PN_MAX_NESTING) depth++;
    for (int i = 0; i < nall && la != YYSYMBOL_YYEOF; i++) {
        const char *name = yysymbol_name(exp[i]);
        if ((strcmp(name, "')'") == 0 || strcmp(name, "']'") == 0) && depth > 0 && depth <= PN_MAX_NESTING) {
            uint32_t o = p->open[depth - 1];
            pn_error(p->diags, loc, "expected '%c'", name[1]);
            pn_note(p->diags, (pn_loc){p->file, o, 1}, "to match this '%c'", p->text[o]);
            return 0;
        }
    }
    if (la == YYSYMBOL_YYEOF) {
        if (n > 0) {
            char buf[256] = "expected ";
            for (int i = 0; i < n; i++) {
                if (i > 0) strcat(buf, i == n - 1 ? " or " : ", ");
                strcat(buf, token_desc(exp[i]));
            }
            pn_error(p->diags, loc, "%s at end of file", buf);
        } else {
            pn_error(p->diags, loc, "%s", close ? "expected '}' at end of file" : "unexpected end of file");
        }
        if (p->depth > 0 && p->depth <= PN_MAX_NESTING) {
            uint32_t o = p->open[p->depth - 1];
            pn_note(p->diags, (pn_loc){p->file, o, 1}, "to match this '%c'", p->text[o]);
        }
        return 0;
    }
    size_t len = loc.len > 40 ? 40 : loc.len;
    const char *what = la == YYSYMBOL_IDENT ? "identifier " : la == YYSYMBOL_INT || la == YYSYMBOL_FLOAT ? "number " : "";
    if (n <= 0) {
        pn_error(p->diags, loc, "unexpected %s'%.*s%s'", what, (int)len, p->text + loc.off, loc.len > 40 ? "..." : "");
        return 0;
    }
    char buf[256] = "expected ";
    for (int i = 0; i < n; i++) {
        if (i > 0) strcat(buf, i == n - 1 ? " or " : ", ");
        strcat(buf, token_desc(exp[i]));
    }
    pn_error(p->diags, loc, "%s before %s'%.*s%s'", buf, what, (int)len, p->text + loc.off, loc.len > 40 ? "..." : "");
    return 0;
}
