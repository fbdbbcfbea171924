#pragma once
/* mingw-w64 10 batclass.h redefines its GUIDs on a second inclusion; no Module built here uses it. */
