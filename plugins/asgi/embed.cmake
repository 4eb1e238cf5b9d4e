# cmake -DIN=file -DOUT=header -DNAME=symbol -P embed.cmake
# Writes `static const char NAME[] = {...};` holding IN's bytes plus a NUL.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# Break the initialiser into lines of 16 bytes.
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* Generated from ${IN}; do not edit. */\n"
                  "static const char ${NAME}[] = {\n${bytes}0x00};\n")
