/* The CPUs a target knows, to check --cpu before LLVM sees it: LLVM only warns about a name it
 * does not know (and then aborts on x86-64 when the "CPU" lacks 64-bit mode). The C API has no
 * list of CPUs, but a subtarget created for the CPU "help" prints one on stderr; it is captured
 * through a temporary file. */
#include "codegen.h"
#include "../support/util.h"

#include <llvm-c/Disassembler.h>
#include <llvm-c/Target.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *pn_target_triple(const char *triple) {
    char *t = triple ? LLVMNormalizeTargetTriple(triple) : LLVMGetDefaultTargetTriple();
    char *copy = pn_xstrdup(t);
    LLVMDisposeMessage(t);
    return copy;
}

/* What LLVM prints on stderr for the CPU "help" of triple, or NULL. */
static char *help_text(const char *triple) {
    LLVMInitializeAllTargetInfos();
    LLVMInitializeAllTargetMCs();
    LLVMInitializeAllDisassemblers();
    FILE *tmp = tmpfile();
    if (!tmp) return NULL;
    fflush(stderr);
    int saved = dup(2);
    if (saved < 0 || dup2(fileno(tmp), 2) < 0) {
        if (saved >= 0) close(saved);
        fclose(tmp);
        return NULL;
    }
    LLVMDisasmContextRef d = LLVMCreateDisasmCPU(triple, "help", NULL, 0, NULL, NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (d) LLVMDisasmDispose(d);
    long len = fseek(tmp, 0, SEEK_END) == 0 ? ftell(tmp) : -1;
    char *text = NULL;
    if (len > 0 && fseek(tmp, 0, SEEK_SET) == 0) {
        text = pn_xmalloc((size_t)len + 1);
        size_t got = fread(text, 1, (size_t)len, tmp);
        text[got] = 0;
    }
    fclose(tmp);
    return text;
}

char **pn_target_cpus(const char *triple, int *n) {
    *n = 0;
    char *text = help_text(triple);
    if (!text) return NULL;
    char *list = strstr(text, "Available CPUs for this target:");
    char **names = NULL;
    int cap = 0;
    if (list) {
        /* The list is printed once per subtarget; the first copy ends at the next heading. */
        char *end = strstr(list + 1, "Available ");
        if (end) *end = 0;
        for (char *line = strchr(list, '\n'); line; line = strchr(line + 1, '\n')) {
            char name[128];
            if (strncmp(line + 1, "  ", 2) != 0 || sscanf(line + 1, "%127s", name) != 1) continue;
            if (*n == cap) names = pn_xrealloc(names, sizeof *names * (size_t)(cap = cap ? cap * 2 : 64));
            names[(*n)++] = pn_xstrdup(name);
        }
    }
    free(text);
    return names;
}

void pn_target_cpus_free(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

bool pn_target_check_cpu(const char *triple, const char *cpu, char *err, size_t errlen) {
    int n;
    char **names = pn_target_cpus(triple, &n);
    if (!names) return true; /* the target cannot list its CPUs: LLVM decides */
    bool known = false;
    for (int i = 0; i < n && !known; i++) known = strcmp(names[i], cpu) == 0;
    if (!known) {
        const char *best = pn_closest(cpu, (const char *const *)names, n);
        snprintf(err, errlen, "unknown CPU '%s' for target '%s'%s%s%s (--cpu help lists them)", cpu, triple,
                 best ? "; did you mean '" : "", best ? best : "", best ? "'?" : "");
    }
    pn_target_cpus_free(names, n);
    return known;
}
