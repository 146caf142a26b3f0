// <immintrin.h> for the AVX-512 files.  GCC 12's own intrinsic headers trip -Wuninitialized once inlined (their
// _mm512_undefined_* idiom, a known false positive); the pragma covers only the header's lines, so our code keeps
// the warning under -Werror.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
