#version 330 core
// storetwin: the fragment half of vertex_lit.vert: the colour worked out at the vertices.
in vec4 lit_colour;
out vec4 frag_color;

void main()
{
    frag_color = lit_colour;
}
