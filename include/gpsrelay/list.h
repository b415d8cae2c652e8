/*
 * list.h - intrusive doubly linked lists. The owner holds a head (and, for lists appended
 * at the end, a tail); each element holds prev/next fields, named by the caller so one
 * element can sit in several lists. Two shapes, never mixed on one list:
 *
 *   GR_LIST_PUSH / GR_LIST_REMOVE            head only, new elements at the front
 *   GR_LIST_APPEND / GR_LIST_PREPEND /       head and tail, new elements at either end,
 *   GR_LIST_REPLACE / GR_LIST_UNLINK         or in the place of another
 */
#ifndef GPSRELAY_LIST_H
#define GPSRELAY_LIST_H

#include <stddef.h>

#define GR_LIST_PUSH(head, e, prev, next)                                                          \
    do {                                                                                           \
        (e)->prev = NULL;                                                                          \
        (e)->next = (head);                                                                        \
        if (head)                                                                                  \
            (head)->prev = (e);                                                                    \
        (head) = (e);                                                                              \
    } while (0)

#define GR_LIST_REMOVE(head, e, prev, next)                                                        \
    do {                                                                                           \
        if ((e)->prev)                                                                             \
            (e)->prev->next = (e)->next;                                                           \
        else                                                                                       \
            (head) = (e)->next;                                                                    \
        if ((e)->next)                                                                             \
            (e)->next->prev = (e)->prev;                                                           \
        (e)->prev = (e)->next = NULL;                                                              \
    } while (0)

#define GR_LIST_APPEND(head, tail, e, prev, next)                                                  \
    do {                                                                                           \
        (e)->next = NULL;                                                                          \
        (e)->prev = (tail);                                                                        \
        if (tail)                                                                                  \
            (tail)->next = (e);                                                                    \
        else                                                                                       \
            (head) = (e);                                                                          \
        (tail) = (e);                                                                              \
    } while (0)

#define GR_LIST_PREPEND(head, tail, e, prev, next)                                                 \
    do {                                                                                           \
        (e)->prev = NULL;                                                                          \
        (e)->next = (head);                                                                        \
        if (head)                                                                                  \
            (head)->prev = (e);                                                                    \
        else                                                                                       \
            (tail) = (e);                                                                          \
        (head) = (e);                                                                              \
    } while (0)

/* e takes old's place; old's links are left as they were. */
#define GR_LIST_REPLACE(head, tail, old, e, prev, next)                                            \
    do {                                                                                           \
        (e)->prev = (old)->prev;                                                                   \
        (e)->next = (old)->next;                                                                   \
        if ((e)->prev)                                                                             \
            (e)->prev->next = (e);                                                                 \
        else                                                                                       \
            (head) = (e);                                                                          \
        if ((e)->next)                                                                             \
            (e)->next->prev = (e);                                                                 \
        else                                                                                       \
            (tail) = (e);                                                                          \
    } while (0)

#define GR_LIST_UNLINK(head, tail, e, prev, next)                                                  \
    do {                                                                                           \
        if ((e)->prev)                                                                             \
            (e)->prev->next = (e)->next;                                                           \
        else                                                                                       \
            (head) = (e)->next;                                                                    \
        if ((e)->next)                                                                             \
            (e)->next->prev = (e)->prev;                                                           \
        else                                                                                       \
            (tail) = (e)->prev;                                                                    \
        (e)->prev = (e)->next = NULL;                                                              \
    } while (0)

#endif
